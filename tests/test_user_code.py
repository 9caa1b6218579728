"""One resolver for the user's 'package.module:callable' names (trtforge/user_code.py): a module's
factory (export) and a pipeline's runner (pipelines/check.py) are found the same way and a wrong
name is the same one line, in the caller's error class and naming the caller's field."""

from __future__ import annotations

import pytest

from trtforge.errors import ExportError, PipelineError
from trtforge.manifest import parse_manifest
from trtforge.pipelines.check import load_runner
from trtforge.user_code import resolve_callable

USER = """
import sys

def make():
    return 1

class Holder:
    @staticmethod
    def run(m):
        return {"y": m}

NOT_CALLABLE = 3
"""

MANIFEST = """
[modules.m]
factory = "usermod:{factory}"
inputs.x = {{ shape = [2] }}

[pipelines.p]
modules = ["m"]
runner = "usermod:{runner}"
outputs.y = {{}}
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "usermod.py").write_text(USER)
    (tmp_path / "broken_dep.py").write_text("import trtforge_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # undone after the test (resolve adds root itself)
    return tmp_path


def _manifest(root, factory="make", runner="Holder.run"):
    text = MANIFEST.format(factory=factory, runner=runner)
    return parse_manifest(text, root / "engines.toml")


def test_factories_and_runners_resolve_from_the_manifest_folder(project):
    from trtforge.export.torch_export import load_factory

    m = _manifest(project)
    assert load_factory(m.module("m"), project)() == 1
    assert load_runner(m.pipelines[0], project)(2) == {"y": 2}  # a dotted attribute path


@pytest.mark.parametrize(
    ("target", "message", "hint"),
    [
        ("usermod:mkae", "'usermod' has no attribute 'mkae'", "did you mean 'make'?"),
        ("usermod:NOT_CALLABLE", "'usermod:NOT_CALLABLE' is not callable", None),
        ("broken_dep:f", "cannot import 'broken_dep': ModuleNotFoundError", "check the module path and its imports"),
    ],
)
def test_a_wrong_name_is_one_line_in_the_callers_error_class(project, target, message, hint):
    for error, where, module in ((ExportError, "modules.m.factory", "m"), (PipelineError, "pipelines.p.runner", None)):
        with pytest.raises(error) as e:
            resolve_callable(target, project, where=where, error=error, module=module)
        line = e.value.one_line()
        assert type(e.value) is error and message in line and where in line and "\n" not in line
        assert hint is None or hint in line
        assert (f"module '{module}'" in line) == (module is not None)


def test_the_pipeline_runner_names_its_field(project):
    with pytest.raises(PipelineError, match=r"pipelines\.p\.runner: 'usermod' has no attribute 'Holder\.rnu'"):
        load_runner(_manifest(project, runner="Holder.rnu").pipelines[0], project)
