"""Issue 23's examples verified by the example build (`make engines`): the text-to-image pipeline
(CLIP text encoder, 4 DDIM steps of a UNet with classifier-free guidance, VAE decoder) and the
tiny causal LM greedy-decoding 8 tokens for a left-padded batch both pass, every call recorded,
and are published beside the engines. Read from the pipeline checks' cache records (the build's
--json lists modules; report.json is rewritten by whichever test builds in the shared folder last)."""

from __future__ import annotations

import json

import pytest

from trtforge.cache.store import Store
from trtforge.pipelines.keys import STAGE

pytestmark = pytest.mark.slow  # the shared real build of the example manifest


def _check(root, name: str) -> dict:
    store = Store(root / ".trtforge-cache", writable=False)
    last = store.last(f"pipelines/{name}", STAGE)
    assert last is not None, name
    record = store.lookup(last["key"])
    assert record is not None, name
    return dict(record.meta)


def test_both_example_pipelines_pass_with_every_call_recorded_and_are_published(built_examples):
    root, _ = built_examples
    t2i, greedy = _check(root, "txt2img"), _check(root, "greedy")
    assert t2i["passed"] is True and greedy["passed"] is True, (t2i["reason"], greedy["reason"])
    assert t2i["calls"] == {"text_encoder": 1, "unet": 4, "vae_decoder": 1}  # 4 steps, guidance batched
    unet_steps = [c["outputs"]["noise_pred"]["rel_l2"] for c in t2i["series"]["unet"]]
    assert len(unet_steps) == 4 and all(0 < e < 0.05 for e in unet_steps), unet_steps
    assert t2i["outputs"]["image"]["metric"] == "psnr" and t2i["outputs"]["image"]["value"] >= 30
    assert greedy["calls"] == {"lm_prefill": 1, "lm_decode": 7}
    assert greedy["outputs"]["tokens"]["value"] == 1.0  # every generated token of both prompts
    index = json.loads((root / "engines" / "index.json").read_text())
    assert set(index["pipelines"]) == {"txt2img", "greedy"}
    for name in ("txt2img", "greedy"):
        assert (root / "engines" / "pipelines" / name / "reference.npz").is_file()
