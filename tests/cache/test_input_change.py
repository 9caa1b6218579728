"""An input that changes while its stage runs is detected: the result is not stored under the key
computed before the change, and the next run builds from the new input."""

from __future__ import annotations

import time

import pytest

from tests.cache.conftest import MLP, build, popen_build, records, stages_recorded, states

pytestmark = pytest.mark.slow  # real processes building real engines


def test_source_edited_during_export_is_not_published(tiny_project):
    cache = tiny_project / ".trtforge-cache"
    proc = popen_build(tiny_project)
    deadline = time.time() + 120
    while not list((cache / "tmp").glob("*mlp.export.*")):  # the export stage has started
        assert proc.poll() is None and time.time() < deadline, proc.stderr and proc.stderr.read()
        time.sleep(0.02)
    (tiny_project / "tinymods" / "mlp.py").write_text(MLP + "\n# edited while exporting\n")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err[-2000:]
    assert "an input changed during the build; not published" in err
    assert "export" not in stages_recorded(cache) and records(cache) == []

    proc, report = build(tiny_project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert states(report)["export"] == "ok"
