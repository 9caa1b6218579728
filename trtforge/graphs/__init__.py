"""ONNX graphs on disk and in memory: reading and saving them with their external weights
(`files`), evaluating them node by node (`evaluate`), and finding cycles (`cycles`). Shared: any
stage may import it."""
