"""Run a natively FP16 graph in FP32 with ONNX Runtime and record how large every activation gets.

Data-driven rules need the activations an FP32 run would produce; AutoCast-style tools only read
FP32 graphs, but trtforge exports FP16 natively. So the graph runs widened to FLOAT (FP16 weights,
Constants and Cast targets), node by node (trtforge.graphs.evaluate), on the example inputs plus N
seeded random inputs drawn from the examples' own range. The result is max |x| per tensor name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx


def probe_feeds(feeds: dict, n_random: int, seed: int) -> list[dict]:
    """The example inputs plus n seeded random ones in each float or integer input's observed range
    (a block that only some token ids make hot is then seen more often; bool inputs stay)."""
    rng = np.random.default_rng(seed)
    sets = [feeds]
    for _ in range(n_random):
        one = {}
        for name, x in feeds.items():
            if np.issubdtype(x.dtype, np.floating):
                lo, hi = float(x.min()), float(x.max())
                one[name] = rng.uniform(lo, hi if hi > lo else lo + 1.0, size=x.shape).astype(x.dtype)
            elif np.issubdtype(x.dtype, np.integer) and x.size:  # token ids, timesteps: other values
                one[name] = rng.integers(int(x.min()), int(x.max()), size=x.shape, endpoint=True).astype(x.dtype)
            else:
                one[name] = x
        sets.append(one)
    return sets


# values at or below this are mask entries (finfo(float16).min = -65504, with a score added), not scores
MASK_FLOOR = -0.9 * 65504.0


def run_fp32(
    model16: onnx.ModelProto, base_dir: Path | None, feed_sets: list[dict]
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """max |x| per float tensor (inputs, intermediates, outputs) over all feed sets, in FP32: node by
    node with weights streamed (trtforge.graphs.evaluate), so memory stays at the live activations.
    Second dict: the same without mask entries (-inf, or <= MASK_FLOOR), which `auto` must not
    take for scores. Third: the largest value (a softmax's largest logit; a mask of -100, as in
    Swin's shifted windows, is no logit that exp() could overflow on)."""
    from trtforge.graphs.evaluate import Evaluator

    evaluator = Evaluator(model16, base_dir, "fp32")
    peak: dict[str, float] = {}
    unmasked: dict[str, float] = {}
    top_: dict[str, float] = {}

    def observe(name: str, value: np.ndarray) -> None:
        if np.issubdtype(value.dtype, np.floating) and value.size:
            peak[name] = max(peak.get(name, 0.0), float(np.nanmax(np.abs(value))))
            scores = value[value > MASK_FLOOR]
            peak_scores = float(np.nanmax(np.abs(scores))) if scores.size else 0.0
            unmasked[name] = max(unmasked.get(name, 0.0), peak_scores)
            finite = value[np.isfinite(value)]
            top_[name] = max(top_.get(name, float("-inf")), float(finite.max()) if finite.size else float("-inf"))

    for feeds in feed_sets:
        evaluator.run(feeds, observe=observe)
    return peak, unmasked, top_


def tensors_fp32(model16: onnx.ModelProto, base_dir: Path | None, feeds: dict) -> dict[str, np.ndarray]:
    """Every float tensor of one FP32 run (for `debug precision`: the reference per tensor)."""
    from trtforge.graphs.evaluate import Evaluator

    env = Evaluator(model16, base_dir, "fp32").run(feeds, keep="all")
    return {k: v for k, v in env.items() if np.issubdtype(np.asarray(v).dtype, np.floating)}


class Probe:
    """Lazily computed FP32 activation peaks for the rules that need data."""

    def __init__(self, model16: onnx.ModelProto, base_dir: Path | None, feeds: dict):
        self.model16, self.base_dir, self.feeds = model16, base_dir, feeds
        self._cache: dict[tuple, tuple[dict, dict, dict]] = {}

    def _run(self, n_random: int, seed: int) -> tuple[dict, dict, dict]:
        key = (n_random, seed)
        if key not in self._cache:
            self._cache[key] = run_fp32(self.model16, self.base_dir, probe_feeds(self.feeds, n_random, seed))
        return self._cache[key]

    def peaks(self, n_random: int = 0, seed: int = 0) -> dict[str, float]:
        """max |x| per tensor."""
        return self._run(n_random, seed)[0]

    def score_peaks(self, n_random: int = 0, seed: int = 0) -> dict[str, float]:
        """max |x| per tensor, mask entries (-inf, about -65504) left out."""
        return self._run(n_random, seed)[1]

    def top(self, n_random: int = 0, seed: int = 0) -> dict[str, float]:
        """The largest value per tensor (signed)."""
        return self._run(n_random, seed)[2]
