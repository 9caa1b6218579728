"""Bad input, round three (issue 28), through the console script: a graph input and output that
share a name, a forward that returns an int, a full disk under --cache-dir, a damaged index.json."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import cache_problems
from tests.errors.conftest import HERE, build, nothing_lost, one_error_line, write_case

pytestmark = pytest.mark.slow  # the console script on real exports


@pytest.fixture(scope="module")
def models(project):
    shutil.copy(HERE / "trust_models.py", project / "trust_models.py")
    return project


FEEDS_ITSELF = """
[modules.unet]
factory = "trust_models:make_feeds_itself"
inputs.{name} = {{ shape = [2, 8], dtype = "float16"{arg} }}
"""


def test_input_and_output_of_one_name_are_refused(models):
    write_case(models, "feeds", FEEDS_ITSELF.format(name="sample", arg=""))
    r = build(models, "feeds")
    one_error_line(
        r, 2, "modules.unet.inputs.sample", "input 'sample' and output 'sample' share a name", "arg = 'sample'"
    )
    nothing_lost(models, "feeds", "unet")
    # the rename the line proposes builds
    write_case(models, "feeds", FEEDS_ITSELF.format(name="sample_in", arg=', arg = "sample"'))
    r = build(models, "feeds")
    assert r.returncode == 0, r.stderr[-2000:]


def test_forward_returning_an_int_is_one_line(models):
    write_case(models, "int", '[modules.m]\nfactory = "trust_models:make_returns_int"\ninputs.x = { shape = [2, 8] }\n')
    r = build(models, "int")
    one_error_line(r, 2, "modules.m.factory", "forward returned int 3, not tensors")
    nothing_lost(models, "int", "m")


def test_full_disk_under_the_cache_dir_is_one_line(models, tmp_path):
    """The disk holding --cache-dir fills while the export stage writes its work folder (inside
    the stage's child process): before, a 92-line OSError traceback (exit 1)."""
    write_case(models, "full", FEEDS_ITSELF.format(name="x", arg=""))
    cache = tmp_path / "full-cache"
    r = build(models, "full", "--cache-dir", str(cache), env={"TRTFORGE_TEST_ENOSPC_AT": "work:export"})
    one_error_line(r, 2, "cannot write: No space left on device", "--cache-dir")
    nothing_lost(models, "full", "unet")
    assert cache_problems(cache) == [] and not list((cache / "tmp").iterdir())
    r = build(models, "full", "--cache-dir", str(cache))  # space again: the build resumes
    assert r.returncode == 0, r.stderr[-2000:]
