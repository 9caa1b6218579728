"""`trtforge verify`'s half of a pipeline: a module the published pipeline calls that the folder
does not hold fails the pipeline by name, before anything is run (no engine, no runner needed)."""

from __future__ import annotations

import json

from trtforge.pipelines.target import check_on_target


def test_a_module_the_pipeline_calls_that_is_not_published_fails_by_name(tmp_path):
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "gen.json").write_text(json.dumps({"modules": ["unet", "vae", "text"]}))
    (tmp_path / "unet.json").write_text(json.dumps({"backend": "tensorrt_rtx", "target": {}}))
    modules = {"unet": {"sidecar": "unet.json"}, "text": {"sidecar": "text.json"}}  # text's file is gone

    got = check_on_target(tmp_path, "gen", {"sidecar": "pipelines/gen.json"}, modules, require_engine_check=False)

    assert got == {
        "module": "pipelines/gen",
        "status": "failed",
        "reason": "module 'vae' it calls is not published here",
    }
