"""Bad manifests, through the console script: exit 2, one line naming the field, nothing built.
None of these cases imports torch: a manifest mistake is caught before any stage runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.errors.conftest import build, nothing_lost, one_error_line, write_case

pytestmark = pytest.mark.slow  # the console script (a process per case; no stage runs)

TINY = """
[modules.tiny]
factory = "bad_models:make_tiny"
inputs.x = { shape = [1, 3, 8, 8] }
"""

# (case, manifest body, what the one line must contain)
CASES = [
    (
        "toml_syntax",
        """
     [modules.tiny]
     factory = "bad_models:make_tiny"
     inputs.x = { shape = [1, 3, 8, 8 }
     """,
        ["TOML syntax error", "line 6", "column"],
    ),
    (
        "unknown_key",
        """
     [modules.tiny]
     facotry = "bad_models:make_tiny"
     inputs.x = { shape = [1, 3, 8, 8] }
     """,
        ["modules.tiny.facotry", "unknown key 'facotry'", "did you mean 'factory'?"],
    ),
    (
        "unknown_nested_key",
        TINY + "build.optimisation_level = 5\n",
        ["modules.tiny.build.optimisation_level", "did you mean 'optimization_level'?"],
    ),
    (
        "unknown_top_table",
        TINY + "[module.other]\nfactory = 'x:y'\n",
        ["unknown top-level table 'module'", "did you mean 'modules'?"],
    ),
    (
        "wrong_type",
        TINY + 'build.workspace_mib = "4G"\n',
        ["modules.tiny.build.workspace_mib", "expected an integer", "'4G'"],
    ),
    ("bool_for_int", TINY + "export.opset = true\n", ["modules.tiny.export.opset", "expected an integer"]),
    (
        "unknown_dtype",
        """
     [modules.tiny]
     factory = "bad_models:make_tiny"
     inputs.x = { shape = [1, 3, 8, 8], dtype = "fp16" }
     """,
        ["modules.tiny.inputs.x.dtype", "'fp16' is not one of", "did you mean 'float16'?"],
    ),
    (
        "zero_dim",
        """
     [modules.tiny]
     factory = "bad_models:make_tiny"
     inputs.x = { shape = [1, 0, 8, 8] }
     """,
        ["modules.tiny.inputs.x.shape", "dimension 1 is 0", "positive integer"],
    ),
    (
        "negative_dim",
        """
     [modules.tiny]
     factory = "bad_models:make_tiny"
     inputs.x = { shape = [1, 3, -8, 8] }
     """,
        ["modules.tiny.inputs.x.shape", "dimension 2 is -8"],
    ),
    (
        "float_dim",
        """
     [modules.tiny]
     factory = "bad_models:make_tiny"
     inputs.x = { shape = [1, 3.5, 8, 8] }
     """,
        ["modules.tiny.inputs.x.shape", "dimension 1 is 3.5"],
    ),
    (
        "missing_shape",
        """
     [modules.tiny]
     factory = "bad_models:make_tiny"
     inputs.x = { dtype = "float16" }
     """,
        ["modules.tiny.inputs.x.shape", "missing required key 'shape'"],
    ),
    ("duplicate_module", TINY + TINY, ["module 'tiny' is defined twice", "lines 4 and 8"]),
    (
        "name_path_separator",
        """
     [modules."nets/tiny"]
     factory = "bad_models:make_tiny"
     inputs.x = { shape = [1, 3, 8, 8] }
     """,
        ["modules.nets/tiny", "no path separators or '..'"],
    ),
    (
        "name_dotdot",
        """
     [modules."a..b"]
     factory = "bad_models:make_tiny"
     inputs.x = { shape = [1, 3, 8, 8] }
     """,
        ["modules.a..b", "no path separators or '..'"],
    ),
    (
        "factory_not_a_path",
        """
     [modules.tiny]
     factory = "bad_models.make_tiny"
     inputs.x = { shape = [1, 3, 8, 8] }
     """,
        ["modules.tiny.factory", "'bad_models.make_tiny' is not 'package.module:callable'"],
    ),
    ("negative_atol", TINY + "verify.atol = -0.01\n", ["modules.tiny.verify.atol", "must be >= 0"]),
    (
        "negative_output_rtol",
        TINY + 'outputs = ["y"]\nverify.outputs.y = { rtol = -1 }\n',
        ["modules.tiny.verify.outputs.y.rtol", "must be >= 0"],
    ),
    ("cosine_above_one", TINY + "verify.min_cosine = 1.5\n", ["modules.tiny.verify.min_cosine", "fraction in [0, 1]"]),
    # TOML has nan and inf: a tolerance of nan passes every comparison, so verification would be off
    ("nan_atol", TINY + "verify.atol = nan\n", ["modules.tiny.verify.atol", "must be a finite number"]),
    ("inf_rtol", TINY + "verify.rtol = inf\n", ["modules.tiny.verify.rtol", "must be a finite number"]),
    (
        "nan_min_cosine",
        TINY + "verify.min_cosine = nan\n",
        ["modules.tiny.verify.min_cosine", "must be a finite number"],
    ),
    (
        "inf_output_atol",
        TINY + 'outputs = ["y"]\nverify.outputs.y = { atol = inf }\n',
        ["modules.tiny.verify.outputs.y.atol", "must be a finite number"],
    ),
    (
        "nan_task_metric",
        TINY + 'outputs = ["y"]\nverify.outputs.y = { metric = "psnr", min_psnr = nan }\n',
        ["modules.tiny.verify.outputs.y.min_psnr", "must be a finite number"],
    ),
    (
        "bad_permutation",
        TINY + 'passes = [{ name = "bake_transpose", input = "x", perm = [0, 2, 2, 1] }]\n',
        ["modules.tiny.passes[0].perm", "not a permutation"],
    ),
    (
        "bake_resize_bad_scale",
        TINY + 'passes = [{ name = "bake_resize", output = "y", scale = 0 }]\n',
        ["modules.tiny.passes[0].scale", "positive number"],
    ),
    (
        "unknown_backend",
        TINY + 'build.backend = "tensorrt_rtx"\n',
        ["modules.tiny.build.backend", "did you mean 'tensorrt-rtx'?"],
    ),
]


@pytest.mark.parametrize("case, body, needles", CASES, ids=[c[0] for c in CASES])
def test_bad_manifest(project, case, body, needles):
    write_case(project, case, body)
    r = build(project, case)
    line = one_error_line(r, 2, *needles)
    assert line.startswith("trtforge: error: manifest: ")
    assert f"{case}.toml" in line  # the file is named
    nothing_lost(project, case, "tiny")


# output folders trtforge must never manage (it deletes what it published there and refuses
# foreign files): (case, output_dir, what the line says)
DANGEROUS_OUTPUT = [
    ("out_root", "/", "root or home folder"),
    ("out_home", str(Path.home()), "root or home folder"),
    ("out_manifest_folder", ".", "the manifest's own folder or contains it"),
    ("out_parent", "..", "the manifest's own folder or contains it"),
    ("out_outside", "../elsewhere/engines", "outside the manifest's folder"),
    ("out_in_cache", ".trtforge-cache/engines", "overlaps the cache folder"),
]


@pytest.mark.parametrize("case, output_dir, needle", DANGEROUS_OUTPUT, ids=[c[0] for c in DANGEROUS_OUTPUT])
def test_dangerous_output_dir(project, case, output_dir, needle):
    write_case(project, case, f'[defaults]\noutput_dir = "{output_dir}"\nverify.atol = 0.01\n' + TINY, header=False)
    r = build(project, case)
    line = one_error_line(r, 2, "defaults.output_dir", needle)
    assert f"{case}.toml" in line
    assert not (project / "report.json").exists() and not (project / "index.json").exists()


def test_default_tolerance_nan(project):
    write_case(
        project, "nan_default", '[defaults]\noutput_dir = "out-nan_default"\nverify.rtol = nan\n' + TINY, header=False
    )
    one_error_line(build(project, "nan_default"), 2, "defaults.verify.rtol", "must be a finite number")


def test_manifest_not_found(project):
    r = build(project, "no_such_manifest")
    one_error_line(r, 2, "no_such_manifest.toml", "file not found")


def test_unknown_module_selected(project):
    write_case(project, "unknown_module", TINY)
    r = build(project, "unknown_module", "--module", "tiyn")
    one_error_line(r, 2, "no module 'tiyn'", "did you mean 'tiny'?")
    nothing_lost(project, "unknown_module", "tiny")


def test_backend_not_installed(project):
    """The datacenter `tensorrt` cannot be installed here: the line says which extra installs it,
    before any stage runs."""
    write_case(project, "backend_missing", TINY + 'build.backend = "tensorrt"\n')
    r = build(project, "backend_missing")
    one_error_line(
        r, 2, "modules.tiny.build.backend", "'tensorrt' is not installed", "pip install 'trtforge[tensorrt]'"
    )
    nothing_lost(project, "backend_missing", "tiny")
    assert not (project / ".trtforge-cache" / "index" / "tiny").exists()  # export never ran


def test_output_folder_not_writable(project):
    """Root ignores chmod, so the output folder sits under a regular file: it cannot be created.
    Checked before any stage runs, so no work is wasted."""
    (project / "a_file").write_text("not a folder")
    write_case(project, "out_not_writable", '[defaults]\noutput_dir = "a_file/engines"\n' + TINY, header=False)
    r = build(project, "out_not_writable")
    one_error_line(r, 2, "a_file/engines", "output folder")
    assert (project / "a_file").read_text() == "not a folder"


def test_cache_folder_not_writable(project):
    (project / "b_file").write_text("not a folder")
    write_case(project, "cache_not_writable", TINY)
    r = build(project, "cache_not_writable", "--cache-dir", "b_file/cache")
    one_error_line(r, 2, "b_file/cache", "cannot create the cache", "--cache-dir")


def test_verify_folder_without_engines(project):
    # a folder with nothing to verify is a user error (wrong path), not a failed verification
    (project / "empty").mkdir(exist_ok=True)
    r = run_cli("verify", "empty", cwd=project)
    one_error_line(r, 2, "no published engines", "empty")
