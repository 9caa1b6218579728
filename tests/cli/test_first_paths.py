"""The paths people try first: no torch or no backend installed, a project with its own
`examples` package, a checkpoint path in factory_args run from another folder, Hopper in
rtx_compute_capabilities, help on every option, shell completion, --jobs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import click
import pytest

from tests.conftest import REPO, run_cli, run_console
from tests.errors.conftest import HERE as ERRORS

TINY = """
[modules.tiny]
factory = "bad_models:make_tiny"
inputs.x = { shape = [1, 3, 8, 8] }
"""

# A test double for "not installed": sitecustomize (imported at startup from PYTHONPATH) makes the
# path finder, which finds installed packages, answer "no such module" for these; the real console
# script then sees what it would see without them (find_spec None, import ModuleNotFoundError).
BLOCKER = """
from importlib.machinery import PathFinder

_find = PathFinder.find_spec.__func__
BLOCKED = {BLOCKED!r}


def _find_spec(cls, name, path=None, target=None):
    return None if name.split(".")[0] in BLOCKED else _find(cls, name, path, target)


PathFinder.find_spec = classmethod(_find_spec)
"""


def _without(tmp_path: Path, *packages: str) -> dict:
    site = tmp_path / "not-installed"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER.format(BLOCKED=set(packages)))
    return {"PYTHONPATH": str(site)}


def _tiny_project(tmp_path: Path, manifest: str = TINY) -> Path:
    shutil.copy(ERRORS / "bad_models.py", tmp_path / "bad_models.py")
    (tmp_path / "engines.toml").write_text(textwrap.dedent(manifest))
    return tmp_path


def _one_line(r, code: int, *parts: str) -> None:
    assert r.returncode == code, r.stdout + r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("trtforge: error: ")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    for part in parts:
        assert part in errors[0], errors[0]


@pytest.mark.slow  # the console script
def test_build_without_torch_is_one_line_and_exit_2(tmp_path):
    project = _tiny_project(tmp_path)
    r = run_console("build", cwd=project, env=_without(tmp_path, "torch"))
    _one_line(r, 2, "export", "PyTorch cannot be imported", "pip install 'trtforge[torch]'")
    assert not list((project / "engines").glob("*/*.engine"))


@pytest.mark.slow  # the console script
def test_build_without_the_backend_is_one_line_and_exit_2(tmp_path):
    project = _tiny_project(tmp_path)
    r = run_console("build", "--backend", "tensorrt-rtx", cwd=project, env=_without(tmp_path, "tensorrt_rtx"))
    _one_line(r, 2, "modules.tiny.build.backend", "'tensorrt-rtx' is not installed", "trtforge[rtx]")
    (tmp_path / "both").mkdir()
    auto = run_console("build", cwd=project, env=_without(tmp_path / "both", "tensorrt_rtx", "tensorrt"))
    _one_line(auto, 2, "no TensorRT backend is installed")


@pytest.mark.slow  # builds a wheel with pip
def test_the_wheel_holds_no_top_level_examples_package(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO / "trtforge", src / "trtforge", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "examples", src / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("trtforge-*.whl")
    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    assert "examples" not in tops and "trtforge" in tops
    assert "trtforge/schema/engines.schema.json" in zipfile.ZipFile(wheel).namelist()


@pytest.mark.slow
def test_a_project_with_its_own_examples_package_builds(tmp_path):
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "__init__.py").write_text("")
    shutil.copy(ERRORS / "bad_models.py", tmp_path / "examples" / "mynet.py")
    (tmp_path / "engines.toml").write_text(TINY.replace("bad_models:make_tiny", "examples.mynet:make_tiny"))
    r = run_cli("build", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert list((tmp_path / "engines").glob("*/tiny.engine"))


CKPT_FACTORY = """
import torch
from torch import nn

from trtforge.export.checkpoint import load_state_dict


def make(checkpoint):
    model = nn.Conv2d(3, 4, 3)
    model.load_state_dict(load_state_dict(checkpoint))
    return model
"""


@pytest.mark.slow
def test_factory_paths_resolve_from_the_manifest_folder_and_key_the_export(tmp_path):
    import torch

    project = tmp_path / "project"
    (project / "ckpt").mkdir(parents=True)
    (project / "ckptnet.py").write_text(CKPT_FACTORY)
    torch.save(torch.nn.Conv2d(3, 4, 3).state_dict(), project / "ckpt" / "model.pt")
    (project / "engines.toml").write_text(
        textwrap.dedent("""
        [modules.ckpt]
        factory = "ckptnet:make"
        factory_args = { checkpoint = "ckpt/model.pt" }
        factory_paths = ["checkpoint"]
        inputs.x = { shape = [1, 3, 8, 8] }
    """)
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    manifest = str(project / "engines.toml")
    r = run_cli("build", "--quiet", manifest, cwd=elsewhere)  # the checkpoint is not under cwd
    assert r.returncode == 0, r.stderr
    assert run_cli("explain", "--check", manifest, cwd=elsewhere).returncode == 0
    torch.save(torch.nn.Conv2d(3, 4, 3).state_dict(), project / "ckpt" / "model.pt")  # new weights
    stale = run_cli("explain", "--check", manifest, cwd=elsewhere)
    assert (
        stale.returncode == 4  # explain --check: would rebuild
        and "ckpt export: will rebuild; changed: material.dependencies.ckpt/model.pt" in stale.stdout
    )


@pytest.mark.slow  # the console script
def test_factory_paths_must_name_a_string_factory_arg(tmp_path):
    project = _tiny_project(tmp_path, TINY + 'factory_args = { channels = 3 }\nfactory_paths = ["chanels"]\n')
    r = run_cli("explain", cwd=project)
    _one_line(
        r, 2, "modules.tiny.factory_paths[0]", "'chanels' is not a key of factory_args", "did you mean 'channels'"
    )
    (project / "engines.toml").write_text(TINY + 'factory_args = { channels = 3 }\nfactory_paths = ["channels"]\n')
    _one_line(run_cli("explain", cwd=project), 2, "factory_args.channels is 3, not a path")


@pytest.mark.slow  # the console script
def test_hopper_in_rtx_compute_capabilities_says_build_with_tensorrt(tmp_path):
    project = _tiny_project(tmp_path, TINY + 'build = { rtx_compute_capabilities = ["8.6", "9.0"] }\n')
    r = run_cli("explain", cwd=project)
    _one_line(
        r, 2, "build.rtx_compute_capabilities[1]", "Hopper (9.0) is not a TensorRT-RTX target", "backend = 'tensorrt'"
    )
    assert "did you mean" not in r.stderr
    (project / "engines.toml").write_text(TINY + "build = { optimization_level = 9 }\n")
    _one_line(run_cli("explain", cwd=project), 2, "build.optimization_level")


def _commands(group: click.Group, path: str = "trtforge"):
    for name, cmd in group.commands.items():
        yield f"{path} {name}", cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, f"{path} {name}")


def test_every_option_has_help_text():
    from trtforge.cli import main

    missing = [
        f"{path} {p.opts[0]}"
        for path, cmd in [("trtforge", main), *_commands(main)]
        for p in cmd.params
        if isinstance(p, click.Option) and not p.help and p.name not in ("help",)
    ]
    assert not missing, missing


@pytest.mark.slow  # the console script
def test_bash_completion_script_is_served():
    r = subprocess.run(
        [str(Path(sys.executable).parent / "trtforge")],
        env={**os.environ, "_TRTFORGE_COMPLETE": "bash_source"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "_trtforge_completion" in r.stdout and "complete " in r.stdout
    assert "_TRTFORGE_COMPLETE=bash_source trtforge" in (REPO / "README.md").read_text()
