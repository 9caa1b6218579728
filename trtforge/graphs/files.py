"""An ONNX artifact is a folder: `model.onnx` plus the external-data files it names."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx_graphsurgeon.ir.tensor import LazyValues

from trtforge.artifacts import ExportFiles, GraphPassesFiles

MODEL = ExportFiles.MODEL  # every ONNX stage names its graph so
# outputs the graph_passes meaning check computed (widened to FP32, node by node) for the export
# graph and the final graph on an example set: `in:<input>` and `out:<output>` arrays. The verify
# stage uses them for that set instead of evaluating the same graph on the same inputs again.
EVALUATED = GraphPassesFiles.EVALUATED


def load_graph_proto(folder: Path) -> onnx.ModelProto:
    """The model without its weights: external tensors stay references into their files."""
    return onnx.load(str(folder / MODEL), load_external_data=False)


def external_locations(model: onnx.ModelProto) -> set[str]:
    locs = set()
    for graph in _graphs(model.graph):
        for t in graph.initializer:
            if t.data_location == onnx.TensorProto.EXTERNAL:
                for kv in t.external_data:
                    if kv.key == "location":
                        locs.add(kv.value)
    return locs


def weight_bytes(model: onnx.ModelProto) -> int:
    """Bytes of the model's initializers: inline data plus each external tensor's recorded length
    (read from the protobuf alone, no file is opened)."""
    total = 0
    for t in model.graph.initializer:
        info = {kv.key: kv.value for kv in t.external_data}
        total += int(info.get("length", 0)) or len(t.raw_data)
    return total


def _graphs(graph):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            for g in attr.graphs:
                yield from _graphs(g)


def carry_weights(model: onnx.ModelProto, src: Path, dest: Path) -> None:
    """Give `dest` the external-data files `model` still references in `src` (hard link, no copy)."""
    for loc in external_locations(model):
        if os.path.isabs(loc) or ".." in Path(loc).parts:
            raise ValueError(f"external data location escapes the model folder: {loc}")
        target = dest / loc
        if target.exists():
            continue
        try:
            os.link(src / loc, target)
        except OSError:
            shutil.copyfile(src / loc, target)


def save_model(model: onnx.ModelProto, src: Path, dest: Path, new_data: str) -> None:
    """Save `model` into `dest`. Tensors still external keep pointing at the carried files; tensors
    a pass created inline and that are large go to `new_data`, so no protobuf nears 2 GB."""
    carry_weights(model, src, dest)
    onnx.external_data_helper.convert_model_to_external_data(
        model, all_tensors_to_one_file=True, location=new_data, size_threshold=1024, convert_attribute=False
    )
    onnx.save_model(model, str(dest / MODEL))


class ExternalLazyValues(LazyValues):
    """LazyValues that read external data relative to the model's folder, not the working
    directory, and only when a pass asks for the values."""

    def __init__(self, tensor, base_dir: Path):
        super().__init__(tensor)
        self.base_dir = str(base_dir)

    def load(self):
        return read_tensor(self.tensor, Path(self.base_dir))


def import_graph(model: onnx.ModelProto, base_dir: Path) -> gs.Graph:
    from trtforge.graphs.cycles import check_acyclic

    graph = gs.import_onnx(model)
    check_acyclic(graph)  # every stage's walkers start from here: a cycle never reaches them
    for tensor in graph.tensors().values():
        if isinstance(tensor, gs.Constant) and isinstance(tensor._values, LazyValues):
            proto = tensor._values.tensor
            if getattr(proto, "data_location", 0) == onnx.TensorProto.EXTERNAL:
                tensor._values = ExternalLazyValues(proto, base_dir)
    return graph


# element types whose external bytes are a plain little-endian array of this numpy dtype
_RAW_DTYPES = {
    onnx.TensorProto.FLOAT16: np.dtype("<f2"),
    onnx.TensorProto.FLOAT: np.dtype("<f4"),
    onnx.TensorProto.DOUBLE: np.dtype("<f8"),
    onnx.TensorProto.INT64: np.dtype("<i8"),
    onnx.TensorProto.INT32: np.dtype("<i4"),
    onnx.TensorProto.INT8: np.dtype("i1"),
    onnx.TensorProto.UINT8: np.dtype("u1"),
}


def read_tensor(tensor: onnx.TensorProto, base_dir: Path) -> np.ndarray:
    """One tensor's values, reading only its own bytes of its external-data file. (onnx's own
    loader refuses hard-linked data files, and the cache hands stages hard links.)"""
    if tensor.data_location != onnx.TensorProto.EXTERNAL:
        return onnx.numpy_helper.to_array(tensor)
    info = {kv.key: kv.value for kv in tensor.external_data}
    loc = info["location"]
    if os.path.isabs(loc) or ".." in Path(loc).parts:
        raise ValueError(f"external data location escapes the model folder: {loc}")
    offset = int(info.get("offset", 0))
    np_dtype = _RAW_DTYPES.get(tensor.data_type)  # type: ignore[call-overload]  # onnx stubs: an int enum
    if np_dtype is not None:  # one read straight into the array: no protobuf copies (GBs for a UNet)
        count = int(np.prod(tensor.dims, dtype=np.int64))
        arr = np.fromfile(base_dir / loc, dtype=np_dtype, count=count, offset=offset)
        if arr.size != count:
            raise ValueError(f"external data of '{tensor.name}' in {loc} is truncated")
        return arr.reshape(tuple(tensor.dims))
    with open(base_dir / loc, "rb") as f:
        f.seek(offset)
        data = f.read(int(info["length"])) if "length" in info else f.read()
    inline = onnx.TensorProto()
    inline.CopyFrom(tensor)
    del inline.external_data[:]
    inline.data_location = onnx.TensorProto.DEFAULT
    inline.raw_data = data
    return onnx.numpy_helper.to_array(inline)


def check_full(model: onnx.ModelProto) -> None:
    """`onnx.checker.check_model(full_check=True)` (structure, then strict type and shape
    inference) without reading a weight: external initializers are checked as typed graph inputs.
    (onnx's own check of external data refuses the cache's hard-linked weight files.) Raises
    onnx.checker.ValidationError or onnx.shape_inference.InferenceError."""
    typed = onnx.ModelProto()
    typed.CopyFrom(model)  # the graph only: external weights are references
    external = [t for t in typed.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    inline = [t for t in typed.graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL]
    typed.graph.input.extend(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in external)
    del typed.graph.initializer[:]
    typed.graph.initializer.extend(inline)
    onnx.checker.check_model(typed, full_check=True)
