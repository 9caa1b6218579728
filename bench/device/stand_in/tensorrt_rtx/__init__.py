"""A stand-in for TensorRT-RTX on the device machine, which has no TensorRT of either family: the
build's preflight asks that a backend is installed (backends.resolve) even for `--until
precision_rules`, which never imports it. Importing it fails loudly, so nothing can use it."""

raise ImportError("tensorrt_rtx stand-in (bench/device): no TensorRT-RTX on this machine")
