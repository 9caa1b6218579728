"""trtforge: an offline compiler driver that turns PyTorch modules into verified TensorRT engines."""

__version__ = "0.1.0"
