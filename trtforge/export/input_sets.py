"""Every input set the export records, made before the model is built (a bad data file fails in a
second, not after a model load): the example set, `verify.random_inputs` seeded sets and the named
sets of `verify.input_sets`. numpy only; the export stage adds the references with torch.

An input that `bake_preprocess` computes from the caller's uint8 image takes that image from an
image file (`file = "cat.png"`) or, in a named set, from the set itself (channels last, uint8);
otherwise the export draws a seeded image for it, as before."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trtforge.data.dims import example_values, input_shapes, profile_points, random_points
from trtforge.data.sources import is_random, source_name
from trtforge.data.tensors import NP_DTYPES, make_inputs, random_inputs, random_set_suffix, read_input_set
from trtforge.data.transforms import inverse, preprocess_perm, transforms
from trtforge.errors import ExportError
from trtforge.export import example_data
from trtforge.manifest import InputSpec, ModuleSpec


@dataclass
class InputSet:
    tag: str  # file-name tag: "" for the example set, ".r1", ".s1", ...
    label: str  # what reports call it: "example", "random 1", "samples/a.npz"
    inputs: dict  # the module's inputs by name
    random: dict  # {input: source} of the inputs drawn at random (the report names them)
    images: dict = field(default_factory=dict)  # the caller's uint8 image per preprocessed input


def caller_image_shape(shape: tuple) -> list:
    """The caller's channels-last image shape for a channels-first module input."""
    return [shape[i] for i in inverse(preprocess_perm(len(shape)))]


def _preprocessed(module: ModuleSpec) -> dict[str, InputSpec]:
    """The inputs a baked preprocessing computes from the caller's image, each checked: its
    values come from an image file or are drawn (a constant or an array cannot be an image)."""
    specs = {s.name: s for s in module.inputs}
    out = {}
    for t in transforms(module.passes, module.name):
        spec = specs.get(t["tensor"]) if t["kind"] == "preprocess_input" else None
        if spec is None:
            continue
        kind = source_name(spec.source)
        if kind != "image" and not is_random(spec.source):
            raise ExportError(
                f"bake_preprocess computes '{spec.name}' from the caller's uint8 image; a "
                f"{kind} source cannot give that image",
                where=f"modules.{module.name}.inputs.{spec.name}",
                module=module.name,
                hint="give an image with file = 'x.png', or leave it drawn",
            )
        out[spec.name] = spec
    return out


def _image_files(pre: dict[str, InputSpec], root: Path, where: str) -> dict:
    """The caller's uint8 image of each preprocessed input whose source is an image file."""
    from trtforge.data import samples as sample_files

    out = {}
    for name, spec in pre.items():
        if source_name(spec.source) == "image":
            rel, shape = spec.source["file"], caller_image_shape(spec.shape)
            layout = "NHWC" if len(shape) == 4 else "HWC"
            out[name] = sample_files.read_image(
                root / rel, rel, {"layout": layout}, tuple(shape), np.dtype(np.uint8), f"{where}.{name}"
            )
    return out


def example_sets(module: ModuleSpec, root: Path) -> list[InputSet]:
    """The example set first, then the random sets, then the named sets (in path order)."""
    where = f"modules.{module.name}.inputs"
    pre = _preprocessed(module)
    images = _image_files(pre, root, where)  # the same in every generated set: they are given
    drawn = random_inputs(module.inputs)
    # dynamic dims: the example and random sets are at the example shape (a profile's opt, which
    # the export traces with); then one set at the min, opt and max of every profile (p0.min, ...)
    shapes = input_shapes(module.inputs, example_values(module.profiles)) if module.profiles else None
    seeds: list[tuple[str, str, int | str, dict | None]] = [("", "example", module.verify.seed, shapes)]
    seeds += [
        (random_set_suffix(i), f"random {i}", f"{module.verify.seed}/random{i}", shapes)
        for i in range(1, module.verify.random_inputs + 1)
    ]
    # and `verify.shapes` seeded shapes between the corners of every profile (p0.shape1, ...)
    points = profile_points(module.profiles) + random_points(module.profiles, module.verify.shapes, module.verify.seed)
    seeds += [
        (f".{label}", label, f"{module.verify.seed}/{label}", input_shapes(module.inputs, values))
        for label, values in points
    ]
    sets = [
        InputSet(tag, label, make_inputs(module.inputs, seed=seed, shapes=at, root=root, where=where), drawn, images)
        for tag, label, seed, at in seeds
    ]
    # a named set holds the caller's uint8 image for a preprocessed input; the module's input is
    # computed from it by the export (a placeholder of the module's shape until then)
    caller = {n: (np.dtype(np.uint8), tuple(caller_image_shape(s.shape))) for n, s in pre.items()}
    for i, (label, path) in enumerate(example_data.named_sets(module, root), 1):
        # with dynamic dims a named set is at the example shape (the opt point the export traces at)
        arrays = read_input_set(
            module.inputs, path, label, shapes=shapes, where=f"modules.{module.name}.verify.input_sets", override=caller
        )
        given = {n: arrays[n] for n in pre}
        # a preprocessed input is static (the manifest refuses bake_preprocess on a dynamic one)
        arrays.update({n: np.zeros([int(d) for d in s.shape], NP_DTYPES[s.dtype]) for n, s in pre.items()})
        sets.append(InputSet(example_data.named_set_tag(i), label, arrays, {}, given))
    return sets
