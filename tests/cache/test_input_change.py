"""An input that changes while its stage runs is detected: the result is not stored under the key
computed before the change, and the next run builds from the new input."""

from __future__ import annotations

import pytest

from tests.cache.conftest import MLP, build, popen_build, records, stages_recorded, states
from tests.conftest import Pause

pytestmark = pytest.mark.slow  # real processes building real engines


def test_source_edited_during_export_is_not_published(tiny_project, tmp_path):
    cache = tiny_project / ".trtforge-cache"
    pause = Pause(tmp_path / "pause", "work:export")  # the export stopped inside its work
    proc = popen_build(tiny_project, env=pause.env)
    try:
        pause.wait(proc)
        (tiny_project / "tinymods" / "mlp.py").write_text(MLP + "\n# edited while exporting\n")
    finally:
        pause.release()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err[-2000:]
    assert "an input changed during the build; not published" in err
    assert "export" not in stages_recorded(cache) and records(cache) == []

    proc, report = build(tiny_project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert states(report)["export"] == "ok"
