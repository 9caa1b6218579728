"""The verified input sets and their FP32 references in polygraphy's own JSON format, so a user
can check a published engine with polygraphy as well as with `trtforge verify`:

    polygraphy run <module>.engine --trt --load-inputs <module>.polygraphy-inputs.json \\
        --load-outputs <module>.polygraphy-reference.json --atol 0.01 --rtol 0.01

With several optimization profiles each profile has its own pair (`.p1.json`, ...: the sets whose
shapes it holds, first profile first), run with `--optimization-profile 1`, ...; the plain pair is
profile 0's (every set, for a static engine).

The inputs file is a JSON list of feed dicts, one per input set (polygraphy runs one iteration per
element); the reference is a `RunResults` with one runner whose iterations are the same sets, in
the same order. Both are written by polygraphy's own encoder (numpy arrays as base64 `.npy`), so
they stay readable by the polygraphy that wrote them and its successors.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

from trtforge import backends as be
from trtforge.artifacts import VerifyFiles

INPUTS_JSON = VerifyFiles.POLYGRAPHY_INPUTS
REFERENCE_JSON = VerifyFiles.POLYGRAPHY_REFERENCE
# the name polygraphy prints for the loaded reference ("... vs. trtforge-fp32-reference")
RUNNER = "trtforge-fp32-reference"


def bundle_name(kind: str, profile: int) -> str:
    """polygraphy-inputs.json (profile 0), polygraphy-inputs.p1.json, ...; kind: inputs|reference."""
    base = INPUTS_JSON if kind == "inputs" else REFERENCE_JSON
    return base if profile == 0 else base.replace(".json", f".p{profile}.json")


def write_bundle(
    sets: list[tuple[str, dict, dict]], backend: str, workdir: Path, profiles: list[dict] | None = None
) -> list[str]:
    """sets: (label, caller inputs, caller reference) in verification order; profiles: the build's
    [{input: {min, opt, max}}]. One pair of files per profile that holds a set. Returns the names."""
    be.select(backend)  # polygraphy reads its TensorRT family once, at its first import
    from polygraphy.comparator import IterationResult, RunResults
    from polygraphy.json import to_json

    from trtforge.verify.engine_check import profile_of

    groups: dict[int, list] = {}
    for s in sets:
        groups.setdefault(profile_of(s[1], profiles), []).append(s)
    written = []
    with _torch_not_importable():
        for k, group in sorted(groups.items()):
            (workdir / bundle_name("inputs", k)).write_text(to_json([dict(feeds) for _, feeds, _ in group]))
            iterations = [IterationResult(outputs=dict(ref), runner_name=RUNNER) for _, _, ref in group]
            (workdir / bundle_name("reference", k)).write_text(RunResults([(RUNNER, iterations)]).to_json())
            written += [bundle_name("inputs", k), bundle_name("reference", k)]
    return written


@contextmanager
def _torch_not_importable():
    """Only numpy arrays go in, but polygraphy asks of each array whether it is a torch tensor,
    and of its encoder whether torch can be registered, by importing torch: 1.5 s a module on
    2 cores, in a stage that never needs torch. Unless torch is already loaded, its import fails
    for the duration (the verify stage's process runs one thread)."""
    if "torch" in sys.modules:
        yield
        return
    # `import torch` raises ImportError (the import system's documented way to block a module);
    # typeshed types sys.modules as holding modules only
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        del sys.modules["torch"]
