"""The driver: the one package that knows the stage order (`stages`) and the life of a module
(`lifecycle`: stages → verdict → publish or withdraw, one retry on a corrupt blob). `run` puts one
stage through the cache, `jobs` builds N modules at once, `publish` writes engines/, `explain`
and `debug` are dry and partial runs, `api` is the Python API the CLI calls.

Layers (tests/test_boundaries.py enforces them): the CLI and reports may import the driver; the
driver may import every stage; a stage imports only the shared modules (manifest, errors, stage,
backends, tensors, onnx_files, onnx_eval, io_transforms, cache, ...), never another stage.
"""
