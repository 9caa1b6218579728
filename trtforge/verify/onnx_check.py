"""Run an ONNX stage with ONNX Runtime, two ways.

`session` (the CUDA check) asserts the provider asked for is the one that runs
(ONNX Runtime silently falls back to the CPU when CUDA libraries do not match).

`run_fp16_faithful` / `runner`: node by node with weights streamed from disk
(trtforge.graphs.evaluate), each result stored in its own dtype, or everything widened to FP32. ONNX Runtime's CPU
provider is not FP16-faithful: it computes FP16 MatMul/Softmax in FP32 and drops the Casts between
consecutive ops even with optimisations off, so an FP16 graph that overflows on a GPU passes there.
Measured: a ViT with attention scores of 3.8e5 was 0.1% off in a plain CPU run and NaN everywhere
once every FP16 tensor was really stored as FP16. This evaluator shows the latter.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from trtforge.errors import VerifyError
from trtforge.graphs.evaluate import CUDA_EP, cuda_unusable

__all__ = ["CUDA_EP", "cuda_unusable", "run_fp16_faithful", "runner", "session"]


def session(path: Path, provider: str = "CPUExecutionProvider") -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # graphs/evaluate.py
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=[provider])
    got = sess.get_providers()
    if provider not in got:
        raise VerifyError(
            f"ONNX Runtime provider {provider} requested but {got} is running",
            where=str(path),
            hint="install onnxruntime-gpu matching this CUDA (trtforge[gpu])",
        )
    return sess


def run_fp16_faithful(folder: Path, feeds: dict, every_tensor: bool = False) -> dict:
    """Graph outputs (or, with every_tensor, every tensor computed), FP16-faithfully, node by node
    with weights streamed from disk (trtforge.graphs.evaluate)."""
    from trtforge.graphs.evaluate import evaluate

    return evaluate(folder, feeds, mode="fp16", keep="all" if every_tensor else ())


def runner(folder: Path, mode: str, provider: str | None = None):
    """feeds -> outputs for `folder`'s graph, node by node (mode fp16: faithful; fp32: widened); one
    evaluator, so its node sessions serve every input set. `provider`: graphs.evaluate.choose_provider's
    when None."""
    from trtforge.graphs.evaluate import Evaluator
    from trtforge.graphs.files import load_graph_proto

    made: list = []

    def run(feeds: dict) -> dict:
        if not made:  # inside the check: a graph that cannot even load fails that check
            made.append(Evaluator(load_graph_proto(folder), folder, mode, provider=provider))
        return made[0].run(feeds)

    return run
