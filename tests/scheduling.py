"""How `make test` spreads tests over pytest-xdist workers (`--dist loadgroup`, this scheduler).

Test by test, like `--dist load`, except for tests that must share a process:
- the tests of a module that uses a module-scoped fixture (a project built once, or one that later
  tests go on from) stay on one worker, or the fixture would be built on each and tests that go
  on from an earlier one's state would not find it;
- tests marked `xdist_group(name)` stay together, as in xdist's own loadgroup.
xdist's loadgroup learns groups by rewriting node ids, which pytest 9.2 no longer allows
(pytest-xdist#1386: every test goes its own way, silently). Here each worker writes the groups it
collected to a folder the controller named (before the workers started) and the controller's
scheduler reads them: the workers finish collecting before any test is scheduled.

Modules with slow tests are collected first, so that the long tests start early and the quick ones
fill the gaps at the end instead of a long one running alone."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

GROUPS_ENV = "TRTFORGE_TEST_GROUPS_DIR"


def group_of(item) -> str | None:
    marks = [m.args[0] if m.args else m.kwargs.get("name", "default") for m in item.iter_markers("xdist_group")]
    if marks:
        return "_".join(sorted(map(str, marks)))
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info else ()
    if any(d and d[-1].scope == "module" for d in defs):
        return item.nodeid.split("::", 1)[0]
    return None


def pytest_configure(config):
    if (
        config.pluginmanager.hasplugin("xdist")
        and not os.environ.get("PYTEST_XDIST_WORKER")
        and config.getoption("dist", "no") == "loadgroup"
        and GROUPS_ENV not in os.environ
    ):
        os.environ[GROUPS_ENV] = tempfile.mkdtemp(prefix="trtforge-test-groups-")  # the workers inherit it
        config._trtforge_groups_dir = os.environ[GROUPS_ENV]


def pytest_unconfigure(config):
    folder = getattr(config, "_trtforge_groups_dir", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop(GROUPS_ENV, None)


@pytest.hookimpl(trylast=True)  # after the other reorderings: the order the workers run in
def pytest_collection_modifyitems(config, items):
    # modules with a slow test first, each module's tests kept together and in order (a module
    # split in two would set its module-scoped fixtures up twice)
    slow_modules = {item.nodeid.split("::", 1)[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::", 1)[0] not in slow_modules)
    worker, folder = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get(GROUPS_ENV)
    if worker and folder:
        groups = {item.nodeid: g for item in items if (g := group_of(item))}
        tmp = Path(folder) / f".{worker}.json"
        tmp.write_text(json.dumps(groups))
        tmp.rename(Path(folder) / f"{worker}.json")


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist
def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist") != "loadgroup" or not os.environ.get(GROUPS_ENV):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FixtureGroupScheduling(LoadScopeScheduling):
        """Work units: a group's tests together, every other test alone."""

        _groups: dict | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self._groups is None:  # first called once every worker's collection has come in
                self._groups = {}
                for path in Path(os.environ[GROUPS_ENV]).glob("gw*.json"):
                    self._groups.update(json.loads(path.read_text()))
            group = self._groups.get(nodeid)
            return f"group:{group}" if group else nodeid

    return FixtureGroupScheduling(config, log)
