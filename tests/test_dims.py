"""Named dynamic dimensions and optimization profiles in the manifest (trtforge/data/dims.py): what they
resolve to, that static modules keep their cache keys, and the one-line error of each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from trtforge.data.dims import describe, example_values, profile_points
from trtforge.manifest import parse_manifest

STATIC = """
[modules.m]
factory = "pkg.mod:make"
inputs.x = { shape = [1, 3, 8, 8] }
"""
DYNAMIC = """
[modules.m]
factory = "pkg.mod:make"
inputs.x = { shape = ["batch", 3, "height", "width"] }
inputs.t = { shape = ["batch"], dtype = "int64", range = [0, 9] }
dims.batch = { min = 1, opt = 4, max = 8 }
dims.height = { min = 32, opt = 48, max = 64, multiple_of = 8 }
dims.width = 48
"""
TWO = """
[modules.m]
factory = "pkg.mod:make"
inputs.x = { shape = ["batch", 16] }
profiles = [{ batch = 1 }, { batch = { min = 2, opt = 4, max = 8 } }]
"""


def load(text: str):
    return parse_manifest(text, Path("/tmp/engines.toml")).modules[0]


def test_dims_make_one_profile_with_concrete_points():
    m = load(DYNAMIC)
    assert m.inputs[0].shape == ("batch", 3, "height", "width")
    assert m.profiles == ((("batch", (1, 4, 8, 1)), ("height", (32, 48, 64, 8)), ("width", (48, 48, 48, 1))),)
    shapes = describe(m.profiles, m.inputs)
    assert shapes == [
        {
            "x": {"min": [1, 3, 32, 48], "opt": [4, 3, 48, 48], "max": [8, 3, 64, 48]},
            "t": {"min": [1], "opt": [4], "max": [8]},
        }
    ]
    assert [label for label, _ in profile_points(m.profiles)] == ["p0.min", "p0.opt", "p0.max"]


def test_several_profiles_and_the_example_avoids_a_size_one_dim():
    m = load(TWO)
    assert [dict(p) for p in m.profiles] == [{"batch": (1, 1, 1, 1)}, {"batch": (2, 4, 8, 1)}]
    # torch specialises a dynamic dim whose example is 1: trace at the opt of profile 1
    assert example_values(m.profiles) == {"batch": 4}
    assert [label for label, _ in profile_points(m.profiles)][3:] == ["p1.min", "p1.opt", "p1.max"]


def test_static_modules_keep_their_cache_keys():
    """A static module's key material has no trace of profiles (keys built before dims stay valid);
    a dynamic one's export and build keys change with the ranges."""
    from trtforge.builder import BuildStage
    from trtforge.export import ExportStage

    static = load(STATIC)
    assert static.profiles == () and "profiles" not in static.as_key()
    assert static.as_key()["inputs"] == [
        {"name": "x", "shape": (1, 3, 8, 8), "dtype": "float16", "range": (-1.0, 1.0), "arg": "x"}
    ]
    root = Path("/tmp")
    assert "profiles" not in ExportStage().key_material(static, root)["module"]
    assert "profiles" not in BuildStage(backend_override="tensorrt-rtx").key_material(static, root)
    a, b = load(TWO), load(TWO.replace("max = 8", "max = 16"))
    assert ExportStage().key_material(a, root) != ExportStage().key_material(b, root)
    build = BuildStage(backend_override="tensorrt-rtx")
    assert build.key_material(a, root)["profiles"] != build.key_material(b, root)["profiles"]


ERRORS = [
    # (manifest body after factory, the field named, words of the message)
    ('inputs.x = { shape = ["batch", 3] }', "modules.m.inputs.x.shape[0]", "dimension 'batch' has no range"),
    (
        'inputs.x = { shape = ["batch", 3] }\ndims.batch = { min = 4, opt = 2, max = 8 }',
        "modules.m.dims.batch",
        "min 4 is above opt 2",
    ),
    (
        'inputs.x = { shape = ["batch", 3] }\ndims.batch = { min = 1, opt = 9, max = 8 }',
        "modules.m.dims.batch",
        "opt 9 is above max 8",
    ),
    (
        'inputs.x = { shape = ["batch", 3] }\ndims.batch = { min = 1, opt = 2, max = 8 }\n'
        "dims.height = { min = 1, opt = 2, max = 8 }",
        "modules.m.dims.height",
        "named in no input's shape",
    ),
    (
        'inputs.x = { shape = ["batch", 3] }\ndims.batch = { min = 1, max = 8 }',
        "modules.m.dims.batch.opt",
        "missing 'opt'",
    ),
    (
        'inputs.x = { shape = ["batch", 3] }\ndims.batch = { min = 1, opt = 2, max = 8 }\nprofiles = [{ batch = 1 }]',
        "modules.m.profiles",
        "both 'dims' and 'profiles'",
    ),
    (
        'inputs.x = { shape = ["batch", "n"] }\nprofiles = [{ batch = 1, n = 4 }, { batch = 2 }]',
        "modules.m.profiles[1].n",
        "dimension 'n' (inputs.x.shape[1]) has no range in profiles[1]",
    ),
    (
        'inputs.x = { shape = ["h", 3] }\ndims.h = { min = 32, opt = 40, max = 64, multiple_of = 16 }',
        "modules.m.dims.h.opt",
        "opt 40 is not a multiple of multiple_of 16",
    ),
    (
        'inputs.x = { shape = ["batch", 3] }\ndims.batch = { min = 0, opt = 2, max = 8 }',
        "modules.m.dims.batch.min",
        "must be a positive integer",
    ),
    ('inputs.x = { shape = ["2b", 3] }', "modules.m.inputs.x.shape[0]", "must be an identifier"),
    (
        'inputs.x = { shape = ["batch", 3] }\ndims.batch = { min = 1, opt = 2, max = 8 }\nexport.exporter = "torchscript"',
        "modules.m.export.exporter",
        "need the dynamo exporter",
    ),
    (
        'inputs.x = { shape = ["batch", 3, 8, 8] }\ndims.batch = { min = 1, opt = 2, max = 8 }\n'
        'passes = [{ name = "bake_preprocess", input = "x", mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5] }]',
        "modules.m.passes[0]",
        "bake_preprocess needs a static shape",
    ),
]


@pytest.mark.slow  # the console script, one process per case
@pytest.mark.parametrize("body,field,words", ERRORS, ids=[e[1] + ":" + e[2][:20] for e in ERRORS])
def test_dimension_mistakes_are_one_line_naming_the_field(tmp_path, body, field, words):
    (tmp_path / "engines.toml").write_text(f'[modules.m]\nfactory = "pkg.mod:make"\n{body}\n')
    out = run_cli("build", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trtforge: error:"), out.stderr
    assert field in lines[0] and words in lines[0], lines[0]
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "engines").exists()


def test_the_schema_takes_named_dims_dims_and_profiles():
    import jsonschema
    import tomllib

    from trtforge.schema import generate

    for text in (DYNAMIC, TWO):
        jsonschema.validate(tomllib.loads(text), generate())
    bad = tomllib.loads(DYNAMIC.replace("opt = 4, max = 8", "opt = 4, maxx = 8"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, generate())
