"""Bad input, round two (issue 18), manifest side: limits and value ranges, through the console
script. Each is refused at load time (exit 2, one line naming the field), before numpy, torch or
any stage runs, so none of these costs an export."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli
from tests.errors.conftest import build, nothing_lost, one_error_line, write_case

pytestmark = pytest.mark.slow  # the console script (a process per case; no stage runs)

TINY = """
[modules.tiny]
factory = "bad_models:make_tiny"
inputs.x = { shape = [1, 3, 8, 8] }
"""


def tiny_input(spec: str, name: str = "x") -> str:
    return f'[modules.tiny]\nfactory = "bad_models:make_tiny"\ninputs.{name} = {{ {spec} }}\n'


LONG_NAME = "m" * 240

# (case, manifest body, what the one line must contain)
CASES = [
    (
        "shape_224_gib",
        tiny_input("shape = [1, 3, 100000, 100000]"),
        ["modules.tiny.inputs.x.shape", "55.9 GiB", "the limit is 2 GiB", "smaller example shape"],
    ),
    (
        "shape_int64_max",
        tiny_input("shape = [9223372036854775807]"),
        ["modules.tiny.inputs.x.shape", "the limit is 2 GiB"],
    ),
    (
        "shape_random_sets_add_up",
        TINY.replace("[1, 3, 8, 8]", "[1, 3, 4096, 4096]") + "verify.random_inputs = 64\n",
        ["modules.tiny.inputs.x.shape", "65 set(s)", "fewer verify.random_inputs"],
    ),
    (
        "shape_nine_dims",
        tiny_input("shape = [1, 1, 1, 1, 1, 1, 1, 1, 1]"),
        ["modules.tiny.inputs.x.shape", "9 dimensions", "at most 8"],
    ),
    (
        "dtype_bfloat16",
        tiny_input('shape = [1, 3, 8, 8], dtype = "bfloat16"'),
        ["modules.tiny.inputs.x.dtype", "bfloat16 is not supported", "use float16"],
    ),
    (
        "range_nan",
        tiny_input("shape = [1, 3, 8, 8], range = [nan, 1]"),
        ["modules.tiny.inputs.x.range", "finite number, got nan"],
    ),
    (
        "range_infinite",
        tiny_input("shape = [1, 3, 8, 8], range = [-inf, inf]"),
        ["modules.tiny.inputs.x.range", "finite number, got -inf"],
    ),
    (
        "range_beyond_float16",
        tiny_input("shape = [1, 3, 8, 8], range = [-1e6, 1e6]"),
        ["modules.tiny.inputs.x.range", "does not fit float16", "65504"],
    ),
    (
        "input_name_empty",
        tiny_input("shape = [1, 3, 8, 8]", name='""'),
        ["modules.tiny.inputs.", "input name must not be empty"],
    ),
    (
        "input_name_slash",
        tiny_input("shape = [1, 3, 8, 8]", name='"a/b"'),
        ["modules.tiny.inputs.a/b", "input name 'a/b' must be letters"],
    ),
    ("output_name_empty", TINY + 'outputs = [""]\n', ["modules.tiny.outputs[0]", "output name must not be empty"]),
    ("output_named_twice", TINY + 'outputs = ["y", "y"]\n', ["modules.tiny.outputs", "'y' is named twice"]),
    (
        "resize_size_empty",
        TINY + 'passes = [{ name = "bake_resize", output = "y", size = [] }]\n',
        ["modules.tiny.passes[0].size", "1 to 3 integers"],
    ),
    (
        "resize_scale_100000",
        TINY + 'passes = [{ name = "bake_resize", output = "y", scale = 100000 }]\n',
        ["modules.tiny.passes[0].scale", "up to 64", "100000"],
    ),
    (
        "preprocess_std_nan",
        TINY + 'passes = [{ name = "bake_preprocess", input = "x", mean = [0.5], std = [nan] }]\n',
        ["modules.tiny.passes[0].std", "all finite"],
    ),
    (
        "depends_absolute",
        TINY + 'depends = ["/etc/hostname"]\n',
        ["modules.tiny.depends[0]", "'/etc/hostname' is not relative", "folder of engines.toml"],
    ),
    ("depends_empty", TINY + 'depends = [""]\n', ["modules.tiny.depends[0]", "an empty pattern"]),
    (
        "opset_99",
        TINY + "export.opset = 99\n",
        [
            "modules.tiny.export.opset",
            "opset 99 is outside what the installed torch dynamo exporter supports",
            "set export.opset between",
        ],
    ),
    (
        "opset_torchscript_above_max",
        TINY + 'export = { exporter = "torchscript", opset = 22 }\n',
        ["modules.tiny.export.opset", "torchscript exporter supports (7..20)"],
    ),
    (
        "optimization_level_99",
        TINY + "build.optimization_level = 99\n",
        ["modules.tiny.build.optimization_level", "must be in [0, 5], got 99"],
    ),
    (
        "optimization_level_negative",
        TINY + "build.optimization_level = -1\n",
        ["modules.tiny.build.optimization_level", "must be in [0, 5], got -1"],
    ),
    (
        "workspace_beyond_1_tib",
        TINY + "build.workspace_mib = 9223372036854775807\n",
        ["modules.tiny.build.workspace_mib", "must be in [1, 1048576]"],
    ),
    (
        "random_inputs_1000",
        TINY + "verify.random_inputs = 1000\n",
        ["modules.tiny.verify.random_inputs", "must be in [0, 64]"],
    ),
    (
        "psnr_nan",
        TINY + 'outputs = ["y"]\nverify.outputs.y = { metric = "psnr", min_psnr = nan }\n',
        ["modules.tiny.verify.outputs.y.min_psnr", "finite number, got nan"],
    ),
    (
        "module_name_240_chars",
        TINY.replace("[modules.tiny]", f"[modules.{LONG_NAME}]"),
        [f"modules.{LONG_NAME}", "module name is 240 characters; the limit is 96", "shorter name"],
    ),
    ("defaults_precision_not_table", "precision = 3\n" + TINY, ["defaults.precision", "expected a table"]),
]


@pytest.mark.parametrize("case, body, needles", CASES, ids=[c[0] for c in CASES])
def test_limit(project, case, body, needles):
    write_case(project, case, body)
    r = build(project, case)
    line = one_error_line(r, 2, *needles)
    assert line.startswith("trtforge: error: manifest: ") and f"{case}.toml" in line
    nothing_lost(project, case, "tiny")


def test_cache_dir_empty(project):
    write_case(project, "cache_dir_empty", '[defaults]\ncache_dir = ""\n' + TINY, header=False)
    one_error_line(build(project, "cache_dir_empty"), 2, "defaults.cache_dir", "must not be empty")


def test_manifest_is_dev_zero(project):
    """Never read whole: /dev/zero once grew to 16.8 GiB RSS before a MemoryError."""
    r = run_cli("build", "/dev/zero", cwd=project, timeout=60)
    one_error_line(r, 2, "manifest: /dev/zero", "not a regular file")


def test_manifest_too_large(project):
    path = project / "huge.toml"
    path.write_text(TINY + ("# padding\n" * 120_000))  # ~1.2 MiB of comments
    r = build(project, "huge")
    one_error_line(r, 2, "huge.toml", "larger than the 1024 KiB")
