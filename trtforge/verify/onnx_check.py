"""Run an ONNX stage with ONNX Runtime, two ways.

`run_ort`: a plain CPU session. `session` asserts the provider asked for is the one that runs
(ONNX Runtime silently falls back to the CPU when CUDA libraries do not match).

`run_fp16_faithful`: node by node, each result stored in its declared dtype. ONNX Runtime's CPU
provider is not FP16-faithful: it computes FP16 MatMul/Softmax in FP32 and drops the Casts between
consecutive ops even with optimisations off, so an FP16 graph that overflows on a GPU passes there.
Measured: a ViT with attention scores of 3.8e5 was 0.1% off in a plain CPU run and NaN everywhere
once every FP16 tensor was really stored as FP16. This evaluator shows the latter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from trtforge.errors import VerifyError
from trtforge.onnx_files import MODEL, read_tensor

CUDA_EP = "CUDAExecutionProvider"


def cuda_unusable() -> str | None:
    """Why ONNX Runtime's CUDA provider cannot check a graph here; None when it can (it may still
    fail to load its CUDA libraries: `session` says so)."""
    from trtforge.build import backend as be

    if CUDA_EP not in ort.get_available_providers():
        return "onnxruntime has no CUDA provider here (pip install 'trtforge[gpu]')"
    if not be.gpus():
        return "no NVIDIA GPU on this machine"
    preload = getattr(ort, "preload_dlls", None)  # CUDA/cuDNN from the nvidia pip packages (ORT >= 1.21)
    if preload is not None:
        try:
            preload()
        except Exception:  # noqa: BLE001 - the session below reports what is really missing
            pass
    return None


def session(path: Path, provider: str = "CPUExecutionProvider") -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=[provider])
    got = sess.get_providers()
    if provider not in got:
        raise VerifyError(f"ONNX Runtime provider {provider} requested but {got} is running",
                          where=str(path), hint="install onnxruntime-gpu matching this CUDA (trtforge[gpu])")
    return sess


def run_ort(folder: Path, feeds: dict) -> dict:
    sess = session(folder / MODEL)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def run_fp16_faithful(folder: Path, feeds: dict, every_tensor: bool = False) -> dict:
    """Graph outputs (or, with every_tensor, every tensor computed, in node order)."""
    model = onnx.load(str(folder / MODEL), load_external_data=False)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type for vi in (*inferred.graph.value_info, *inferred.graph.output)}
    env: dict[str, np.ndarray] = dict(feeds)
    for t in model.graph.initializer:
        env[t.name] = read_tensor(t, folder)
    opsets = list(model.opset_import)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    for node in model.graph.node:
        if node.op_type == "Constant":
            attr = node.attribute[0]
            env[node.output[0]] = onnx.numpy_helper.to_array(attr.t) if attr.name == "value" else \
                np.asarray(onnx.helper.get_attribute_value(attr))
            continue
        ins = [n for n in node.input if n]
        inputs = [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(env[n].dtype),
                                                     list(env[n].shape)) for n in dict.fromkeys(ins)]
        outputs = [onnx.helper.make_value_info(o, types[o]) if o in types
                   else onnx.helper.make_empty_tensor_value_info(o) for o in node.output if o]
        single = onnx.helper.make_model(onnx.helper.make_graph([node], "one", inputs, outputs),
                                        opset_imports=opsets, ir_version=model.ir_version)
        sess = ort.InferenceSession(single.SerializeToString(), sess_options=opts,
                                    providers=["CPUExecutionProvider"])
        results = sess.run(None, {n: env[n] for n in dict.fromkeys(ins)})
        env.update(zip([o for o in node.output if o], results))
    if every_tensor:
        return env
    return {o.name: env[o.name] for o in model.graph.output}
