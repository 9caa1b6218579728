"""Bad example data (issue 13), through the console script: exit 2, one line naming the field (and
the file), nothing published, the cache intact. Manifest mistakes are caught at load; a missing
file when the export key is computed (before any stage); a file's shape, dtype or keys by the export
stage before the model is built."""

from __future__ import annotations

import numpy as np
import pytest

from tests.errors.conftest import build, nothing_lost, one_error_line, write_case

pytestmark = pytest.mark.slow  # the console script (a process per case)


def _tiny(fields: str, extra: str = "") -> str:
    fields = f", {fields}" if fields else ""
    return f"""
    [modules.tiny]
    factory = "bad_models:make_tiny"
    inputs.x = {{ shape = [1, 3, 8, 8]{fields} }}
    {extra}
    """


@pytest.fixture(scope="module")
def samples(project):
    folder = project / "samples"
    folder.mkdir(exist_ok=True)
    np.save(folder / "small.npy", np.zeros((1, 3, 4, 4), np.float32))
    np.save(folder / "floats.npy", np.zeros((1, 3, 8, 8), np.float32))
    np.savez(folder / "two.npz", a=np.zeros((1, 3, 8, 8), np.float32), b=np.ones((1, 3, 8, 8), np.float32))
    np.savez(folder / "set_missing.npz", y=np.zeros((1, 3, 8, 8), np.float32))
    np.savez(folder / "set_extra.npz", x=np.zeros((1, 3, 8, 8), np.float32), y=np.zeros(2, np.float32))
    (folder / "garbage.npy").write_bytes(b"not numpy at all")
    (folder / "garbage.png").write_bytes(b"not an image either")
    return folder


# (case, manifest body, what the one line must contain)
LOAD_CASES = [
    (
        "file_and_value",
        _tiny('file = "samples/small.npy", value = 1'),
        ["modules.tiny.inputs.x.value", "file and value are both given", "keep one of file or value"],
    ),
    (
        "range_and_value",
        _tiny("range = [0, 1], value = 1"),
        ["modules.tiny.inputs.x.range", "range and value are both given"],
    ),
    ("misspelt_value", _tiny("vaule = 1"), ["modules.tiny.inputs.x.vaule", "did you mean 'value'?"]),
    ("value_too_big", _tiny("value = 1e6"), ["modules.tiny.inputs.x.value", "does not fit float16"]),
    (
        "value_not_integer",
        _tiny('dtype = "int64", value = 1.5'),
        ["modules.tiny.inputs.x.value", "1.5 is not an integer"],
    ),
    (
        "normal_on_ints",
        _tiny('dtype = "int64", dist = "normal"'),
        ["modules.tiny.inputs.x.dist", "needs a float dtype"],
    ),
    ("unknown_dist", _tiny('dist = "gauss"'), ["modules.tiny.inputs.x.dist", "'gauss' is not one of uniform, normal"]),
    (
        "std_with_uniform",
        _tiny("std = 2.0"),
        ["modules.tiny.inputs.x.std", "does not apply to a uniform input", "belongs to normal / image"],
    ),
    (
        "mask_without_pad",
        _tiny('dtype = "int64", kind = "padding_mask"'),
        ["modules.tiny.inputs.x.pad", "missing required key 'pad'", "value = 1"],
    ),
    (
        "pad_too_long",
        _tiny('dtype = "int64", kind = "padding_mask", pad = 8'),
        ["modules.tiny.inputs.x.pad", "pad 8 leaves no real position in a row of 8"],
    ),
    (
        "ids_without_vocab",
        _tiny('dtype = "int64", kind = "token_ids"'),
        ["modules.tiny.inputs.x.vocab_size", "missing required key 'vocab_size'"],
    ),
    ("unknown_suffix", _tiny('file = "samples/x.csv"'), ["modules.tiny.inputs.x.file", "not a .npy, .npz, .png"]),
    (
        "key_with_npy",
        _tiny('file = "samples/small.npy", key = "a"'),
        ["modules.tiny.inputs.x.key", "a .npy holds one array"],
    ),
    (
        "image_wrong_layout",
        _tiny('file = "samples/cat.png", layout = "NHWC"'),
        ["modules.tiny.inputs.x.layout", "layout NHWC puts 8 channels on axis 3"],
    ),
    (
        "sets_not_npz",
        _tiny("", 'verify.input_sets = ["samples/*.npy"]'),
        ["modules.tiny.verify.input_sets[0]", "does not name .npz files"],
    ),
]


@pytest.mark.parametrize("case,body,needles", LOAD_CASES, ids=[c[0] for c in LOAD_CASES])
def test_bad_input_source(project, case, body, needles):
    write_case(project, case, body)
    one_error_line(build(project, case), 2, *needles)
    nothing_lost(project, case, "tiny")


# caught by the export stage, before the model is built
FILE_CASES = [
    (
        "missing_file",
        _tiny('file = "samples/nope.npy"'),
        ["modules.tiny.inputs.x.file", "'samples/nope.npy' does not exist"],
    ),
    (
        "wrong_shape",
        _tiny('file = "samples/small.npy"'),
        [
            "modules.tiny.inputs.x.file",
            "'samples/small.npy' holds float32[1, 3, 4, 4]",
            "the input is float16[1, 3, 8, 8]",
        ],
    ),
    (
        "floats_for_ints",
        _tiny('dtype = "int64", file = "samples/floats.npy"'),
        ["modules.tiny.inputs.x.file", "holds float32[1, 3, 8, 8] (floats); the input is int64"],
    ),
    (
        "unknown_key",
        _tiny('file = "samples/two.npz", key = "c"'),
        ["modules.tiny.inputs.x.key", "'samples/two.npz' has no array 'c' (it holds: a, b)"],
    ),
    (
        "ambiguous_npz",
        _tiny('file = "samples/two.npz"'),
        ["modules.tiny.inputs.x.key", "holds several arrays (a, b) and none is named 'x'"],
    ),
    (
        "not_numpy",
        _tiny('file = "samples/garbage.npy"'),
        ["modules.tiny.inputs.x.file", "cannot read 'samples/garbage.npy'"],
    ),
    (
        "not_an_image",
        _tiny('file = "samples/garbage.png"'),
        ["modules.tiny.inputs.x.file", "cannot read image 'samples/garbage.png'"],
    ),
    (
        "set_matches_nothing",
        _tiny("", 'verify.input_sets = ["samples/none_*.npz"]'),
        ["modules.tiny.verify.input_sets[0]", "'samples/none_*.npz' matches no file"],
    ),
    (
        "set_missing_input",
        _tiny("", 'verify.input_sets = ["samples/set_missing.npz"]'),
        ["modules.tiny.verify.input_sets", "'samples/set_missing.npz' has no array for input(s) x"],
    ),
    (
        "set_extra_array",
        _tiny("", 'verify.input_sets = ["samples/set_extra.npz"]'),
        ["modules.tiny.verify.input_sets", "holds array(s) y that are not inputs"],
    ),
    (
        "value_for_preprocessed",
        _tiny("value = 0.5", 'passes = [{ name = "bake_preprocess", input = "x", mean = [0.5], std = [0.5] }]'),
        [
            "modules.tiny.inputs.x",
            "bake_preprocess computes 'x' from the caller's uint8 image",
            "a value source cannot give that image",
        ],
    ),
]


@pytest.mark.parametrize("case,body,needles", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_data_file(project, samples, case, body, needles):
    write_case(project, case, body)
    r = build(project, case)
    one_error_line(r, 2, *needles)
    nothing_lost(project, case, "tiny")
