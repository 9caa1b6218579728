"""Large-model bench: a synthetic FP16 ONNX with >= 3 GB of external weights through the default
graph-pass pipeline and the precision stage, measuring peak RSS and wall time.

Goals (issue 3): <= 1 GB peak RSS and <= 5 s wall on a 2-core machine. For reference, on such a
machine with a 3.2 GB model, onnx.load + graphsurgeon import/cleanup/export took 19 s and 9.5 GB.

    python bench/large_model.py [OUT.json] [--gib 3.2]     (default OUT: bench/large_model.json)

The model is written once to bench/scratch/ (gitignored) in chunks of one weight; the measured run
is a child process, so its peak RSS is the pipeline's own, not the generator's.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
F16 = TensorProto.FLOAT16


def _external(name: str, dims: list[int], offset: int, length: int) -> TensorProto:
    t = TensorProto(name=name, data_type=F16, dims=dims, data_location=TensorProto.EXTERNAL)
    for k, v in (("location", "weights.bin"), ("offset", str(offset)), ("length", str(length))):
        t.external_data.add(key=k, value=v)
    return t


def _const(name: str, values, dtype=np.int64) -> TensorProto:
    return onnx.numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def generate(folder: Path, layers: int, width: int, tokens: int = 16, seed: int = 0) -> Path:
    """A chain of `layers` blocks MatMul(W) -> Add(b) -> Cast f32 -> Cast f16 -> Identity -> Relu,
    after a dynamo-style unbind (Slice + Squeeze) and shape arithmetic, and with one attention
    (MatMul(Q, K^T) -> Softmax -> MatMul) for the precision rules. Weights are written one at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    block = (rng.standard_normal((width, width), dtype=np.float32) / np.sqrt(width)).astype(np.float16).tobytes()
    bias = np.zeros(width, np.float16).tobytes()
    nodes, inits = [], []
    inits += [
        _const("axis0", [0]),
        _const("i0", [0]),
        _const("i1", [1]),
        _const("i2", [2]),
        _const("i3", [3]),
        _const("last", [1]),
        _const("minus1", [-1]),
    ]
    for k, (s, e) in enumerate(((("i0", "i1")), ("i1", "i2"), ("i2", "i3"))):
        nodes += [
            helper.make_node("Slice", ["x", s, e, "axis0"], [f"sl{k}"], name=f"unbind_slice{k}"),
            helper.make_node("Squeeze", [f"sl{k}", "axis0"], [f"u{k}"], name=f"unbind_squeeze{k}"),
        ]
    nodes += [
        helper.make_node("Add", ["u0", "u1"], ["qk"], name="add_qk"),
        helper.make_node("Add", ["qk", "u2"], ["h_in"], name="add_v"),
        helper.make_node("Shape", ["h_in"], ["shp"], name="shape"),
        helper.make_node("Gather", ["shp", "last"], ["d"], name="gather_last"),
        helper.make_node("Concat", ["minus1", "d"], ["newshape"], axis=0, name="concat_shape"),
        helper.make_node("Reshape", ["h_in", "newshape"], ["h0"], name="reshape"),
    ]
    offset = 0
    with open(folder / "weights.bin", "wb") as f:
        for i in range(layers):
            f.write(block)
            inits.append(_external(f"W{i}", [width, width], offset, len(block)))
            offset += len(block)
            f.write(bias)
            inits.append(_external(f"b{i}", [width], offset, len(bias)))
            offset += len(bias)
            h, o = f"h{i}", f"h{i + 1}"
            nodes += [
                helper.make_node("MatMul", [h, f"W{i}"], [f"m{i}"], name=f"matmul{i}"),
                helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], name=f"bias{i}"),
                helper.make_node("Cast", [f"a{i}"], [f"c{i}"], to=TensorProto.FLOAT, name=f"up{i}"),
                helper.make_node("Cast", [f"c{i}"], [f"d{i}"], to=F16, name=f"down{i}"),
                helper.make_node("Identity", [f"d{i}"], [f"e{i}"], name=f"identity{i}"),
                helper.make_node("Relu", [f"e{i}"], [o], name=f"relu{i}"),
            ]
    h = f"h{layers}"
    nodes += [
        helper.make_node("Transpose", [h], ["hT"], perm=[1, 0], name="keys_t"),
        helper.make_node("MatMul", [h, "hT"], ["scores"], name="scores"),
        helper.make_node("Softmax", ["scores"], ["probs"], axis=-1, name="softmax"),
        helper.make_node("MatMul", ["probs", h], ["y"], name="attend"),
    ]
    graph = helper.make_graph(
        nodes,
        "large",
        [helper.make_tensor_value_info("x", F16, [3, tokens, width])],
        [helper.make_tensor_value_info("y", F16, [tokens, width])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    onnx.save_model(model, str(folder / "model.onnx"))
    return folder


def measure(src: Path, out: Path) -> dict:
    """In this process: the default passes, then the precision stage; RSS, wall, weights read."""
    t_start = time.perf_counter()
    from trtforge.graph_passes.run import run_pipeline
    from trtforge.graphs import files as onnx_files
    from trtforge.manifest import DEFAULT_PASSES, parse_manifest
    from trtforge.precision_rules.run import run_precision
    from trtforge.stage import StageContext

    read = {"tensors": 0, "bytes": 0}
    original = onnx_files.read_tensor

    def counting(tensor, base_dir):
        values = original(tensor, base_dir)
        read["tensors"] += 1
        read["bytes"] += values.nbytes
        return values

    onnx_files.read_tensor = counting
    imports_s = time.perf_counter() - t_start
    t0 = time.perf_counter()
    (out / "passes").mkdir(parents=True)
    passes = run_pipeline(src, out / "passes", DEFAULT_PASSES, check="off", module="large")
    passes_s = time.perf_counter() - t0
    manifest = parse_manifest(
        '[modules.large]\nfactory = "bench.large_model:none"\ninputs.x = { shape = [1], dtype = "float16" }\n',
        REPO / "engines.toml",
    )
    ctx = StageContext(module=manifest.modules[0], root=REPO, inputs={"graph_passes": out / "passes"})
    t1 = time.perf_counter()
    (out / "precision").mkdir()
    plan = run_precision(ctx, out / "precision", "casts")
    precision_s = time.perf_counter() - t1
    wall = time.perf_counter() - t_start
    files = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    linked = all(
        (out / d / "weights.bin").stat().st_ino == (src / "weights.bin").stat().st_ino for d in ("passes", "precision")
    )
    return {
        "wall_s": wall,
        "imports_s": imports_s,
        "passes_s": passes_s,
        "precision_s": precision_s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "weights_read": read,
        "weights_hard_linked": linked,
        "files": files,
        "largest_protobuf_bytes": max(v for k, v in files.items() if k.endswith(".onnx")),
        "nodes": [passes["nodes_before"], passes["nodes_after"]],
        "fp32_nodes": len(plan["fp32"]),
        "passes": [
            {k: p[k] for k in ("name", "modified", "nodes_before", "nodes_after", "seconds")} for p in passes["passes"]
        ],
    }


def main(out_json: Path, gib: float = 3.2, width: int = 4096) -> dict:
    layer_bytes = width * width * 2 + width * 2
    layers = max(1, int(np.ceil(gib * (1 << 30) / layer_bytes)))
    work = HERE / "scratch" / f"large_{layers}x{width}"
    if not (work / "model.onnx").exists() or (work / "weights.bin").stat().st_size != layers * layer_bytes:
        t0 = time.perf_counter()
        generate(work, layers, width)
        print(f"generated {layers * layer_bytes / 2**30:.2f} GiB in {time.perf_counter() - t0:.1f}s: {work}")
    run = work.parent / f"{work.name}_run"
    subprocess.run(["rm", "-rf", str(run)], check=True)
    t0 = time.perf_counter()
    child = subprocess.run(
        [sys.executable, __file__, "--measure", str(work), str(run)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if child.returncode != 0:
        sys.exit(f"measured run failed:\n{child.stderr[-3000:]}")
    doc = json.loads(child.stdout.strip().splitlines()[-1])
    doc["process_wall_s"] = time.perf_counter() - t0  # interpreter start and every import included
    doc["weights_gib"] = layers * layer_bytes / 2**30
    doc["table"] = [
        {
            "figure": f"model: external weights (GiB), {layers} layers",
            "value": f"{doc['weights_gib']:.2f}",
            "goal": ">= 3",
        },
        {"figure": "passes + precision: peak RSS (MiB)", "value": f"{doc['peak_rss_mib']:.0f}", "goal": "<= 1024"},
        {"figure": "passes + precision: wall incl. imports (s)", "value": f"{doc['wall_s']:.2f}", "goal": "<= 5"},
        {"figure": "whole child process wall (s)", "value": f"{doc['process_wall_s']:.2f}"},
        {"figure": "  of which default passes (s)", "value": f"{doc['passes_s']:.2f}"},
        {"figure": "  of which precision stage (s)", "value": f"{doc['precision_s']:.2f}"},
        {
            "figure": "external weights read (tensors / bytes)",
            "value": f"{doc['weights_read']['tensors']} / {doc['weights_read']['bytes']}",
        },
        {
            "figure": "largest .onnx protobuf written (bytes)",
            "value": str(doc["largest_protobuf_bytes"]),
            "goal": "< 2 GiB",
        },
        {"figure": "weights hard-linked, not copied", "value": str(doc["weights_hard_linked"])},
        {"figure": "nodes before -> after passes", "value": f"{doc['nodes'][0]} -> {doc['nodes'][1]}"},
    ]
    out_json.write_text(json.dumps(doc, indent=1))
    subprocess.run(["rm", "-rf", str(run)], check=True)
    for row in doc["table"]:
        print(f"{row['figure']:<48} {row['value']:>24} {row.get('goal', ''):>10}")
    return doc


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        print(json.dumps(measure(Path(sys.argv[2]), Path(sys.argv[3]))))
    else:
        args = [a for a in sys.argv[1:] if not a.startswith("--")]
        gib = float(sys.argv[sys.argv.index("--gib") + 1]) if "--gib" in sys.argv else 3.2
        if "--gib" in sys.argv:
            args.remove(sys.argv[sys.argv.index("--gib") + 1])
        main(Path(args[0]) if args else HERE / "large_model.json", gib)
