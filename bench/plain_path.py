"""The plain user's path, the baseline of `make bench-big`: `model.half()` + `torch.onnx.export(
dynamo=True, external_data=True)` (phase `export`), then a polygraphy TensorRT-RTX build (phase
`build`), each phase its own process as a user would run them.
    python bench/plain_path.py export|build MODEL OUTDIR"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def export(model: str, out: Path) -> None:
    import torch
    from unets import INPUTS, make_unet

    m = make_unet(model).half().eval()
    args = tuple(torch.rand(s, dtype=torch.float16) for s in INPUTS[model].values())
    with torch.no_grad():
        program = torch.onnx.export(
            m, args, dynamo=True, external_data=True, input_names=list(INPUTS[model]), output_names=["out"]
        )
    program.save(str(out / "model.onnx"), external_data=True)


def build(out: Path) -> None:
    os.environ["POLYGRAPHY_USE_TENSORRT_RTX"] = "1"
    from polygraphy.backend import trt as ptrt
    from polygraphy.backend.tensorrt_rtx import CreateConfigRTX

    net = ptrt.network_from_onnx_path(str(out / "model.onnx"), strongly_typed=True)
    engine = ptrt.engine_bytes_from_network(net, config=CreateConfigRTX())
    (out / "model.engine").write_bytes(bytes(engine))


if __name__ == "__main__":
    phase, model, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    export(model, out) if phase == "export" else build(out)
