"""Meaning checks: ONNX Runtime runs the graph before and after a pass (or a run of passes) on the
recorded example inputs and compares.

- a restructuring pass (`exact`) must give bit-identical outputs;
- a folding pass may change the order of arithmetic: |after - before| <= atol + rtol * |before|
  with FOLD_TOLERANCE, atol scaled by the output's largest magnitude;
- a pass that changes the graph's inputs or outputs is not checked here: the verify stage compares
  it with the equivalent torch op applied to the FP32 reference (export/caller_view.py).

The graphs run node by node, widened to FP32, with weights streamed from their files
(trtforge.graphs.evaluate): nothing is serialised into a protobuf, no session holds the model, and each
node is deterministic, so a restructuring pass can be held to bit-identical outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from trtforge.data.tensors import NP_DTYPES
from trtforge.errors import PassError

FOLD_TOLERANCE = {"rtol": 1e-3, "atol": 1e-3}
_NP = {**NP_DTYPES, "float64": np.float64, "int16": np.int16, "uint16": np.uint16}


def snapshot(graph: gs.Graph, like: onnx.ModelProto | None = None) -> onnx.ModelProto:
    """The graph as ONNX; external weights stay references into their files (nothing is loaded)."""
    model = gs.export_onnx(graph, do_type_check=False)
    if like is not None:
        model.ir_version = like.ir_version
        have = {o.domain for o in model.opset_import}
        model.opset_import.extend([o for o in like.opset_import if o.domain not in have])
    return model


def feeds_for(model: onnx.ModelProto, recorded: list[dict], seed: int = 0) -> dict:
    """Each graph input from the first recorded set that has it with this shape and dtype (the
    example inputs, then the caller's; a symbolic dim, a named dynamic dim, matches any size, so the
    check runs at the recorded concrete shape); otherwise seeded random values of its declared type."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for vi in model.graph.input:
        tt = vi.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))
        shape = [d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim]
        fixed = [d.HasField("dim_value") for d in tt.shape.dim]
        for arrays in recorded:
            a = arrays.get(vi.name)
            if (
                a is not None
                and a.dtype == dtype
                and a.ndim == len(shape)
                and all(n == s or not f for n, s, f in zip(a.shape, shape, fixed))
            ):
                feeds[vi.name] = a
                break
        else:
            if np.issubdtype(dtype, np.floating):
                feeds[vi.name] = rng.uniform(-1, 1, size=shape).astype(dtype)
            elif dtype == np.bool_:
                feeds[vi.name] = rng.integers(0, 2, size=shape).astype(dtype)
            else:
                feeds[vi.name] = rng.integers(0, 8, size=shape).astype(dtype)
    return feeds


def run_model(model: onnx.ModelProto, weights: Path, feeds: dict, sessions=None) -> dict:
    """Run `model` (external data in `weights`) widened to FP32, node by node: deterministic per
    node, memory bounded by the live activations (trtforge.graphs.evaluate)."""
    from trtforge.graphs.evaluate import Evaluator

    return Evaluator(model, weights, "fp32", sessions=sessions).run(feeds)


def compare(passes: list, before: dict, after: dict) -> str:
    """A verdict line, or PassError naming the pass(es) whose outputs moved."""
    exact = all(p.exact for p in passes)
    names = " + ".join(p.name for p in passes)
    if set(before) != set(after):
        raise PassError(f"outputs changed from {sorted(before)} to {sorted(after)}", where=f"pass {names}")
    worst = 0.0
    for name, b in before.items():
        a = after[name]
        if a.shape != b.shape or a.dtype != b.dtype:
            raise PassError(
                f"output '{name}' changed from {b.dtype}{list(b.shape)} to {a.dtype}{list(a.shape)}",
                where=f"pass {names}",
            )
        if exact:
            same = np.array_equal(a, b, equal_nan=np.issubdtype(a.dtype, np.floating))
            if not same:
                diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
                raise PassError(
                    f"output '{name}' is not identical after a restructuring pass (max abs diff {np.nanmax(diff):.3g})",
                    where=f"pass {names}",
                    hint="the rewrite changed the graph's meaning; this is a bug in the pass",
                )
            continue
        b64, a64 = b.astype(np.float64), a.astype(np.float64)
        scale = float(np.nanmax(np.abs(b64))) if b64.size else 0.0
        tol = FOLD_TOLERANCE["atol"] * max(scale, 1.0) + FOLD_TOLERANCE["rtol"] * np.abs(b64)
        with np.errstate(invalid="ignore"):  # inf - inf
            diff = np.abs(a64 - b64)
        bad = ~(diff <= tol) & ~(a64 == b64) & ~(np.isnan(a64) & np.isnan(b64))  # equal infinities agree
        if bad.any():
            raise PassError(
                f"output '{name}' moved beyond the folding tolerance (max abs diff "
                f"{np.nanmax(diff):.3g}, rtol {FOLD_TOLERANCE['rtol']}, atol "
                f"{FOLD_TOLERANCE['atol']} x max|out|)",
                where=f"pass {names}",
                hint="the rewrite changed the graph's meaning; this is a bug in the pass",
            )
        worst = max(worst, float(np.nanmax(diff)) if diff.size else 0.0)
    return "identical" if exact else f"within tolerance (max abs diff {worst:.3g})"


class OrtChecker:
    """`Pipeline.checker`: runs the snapshot taken before and the graph after on the same feeds.
    Every evaluation is remembered by the graph's bytes (`outputs_of`), so the stage can hand the
    export graph's and the final graph's outputs to the verify stage instead of it re-running them."""

    def __init__(
        self,
        weights: Path,
        recorded: list[dict],
        like: onnx.ModelProto | None = None,
        incremental: bool | None = None,
    ):
        from collections import OrderedDict

        self.weights, self.recorded, self.like = weights, recorded, like
        self.sessions: OrderedDict = OrderedDict()  # node sessions shared by every graph checked
        self.memo: dict[bytes, tuple[dict, dict]] = {}  # graph digest -> (feeds, outputs)
        # None: graphs the evaluator runs node by node anyway (more than WHOLE_GRAPH_BYTES of
        # weights) are checked incrementally (incremental.py); a small graph runs whole in one
        # session, faster than any node-by-node sweep. True/False: always/never where it can.
        self.incremental = incremental
        self.nodes_evaluated = 0  # nodes run by every check so far (a whole-graph run counts all)
        self.last_joint: Any = None  # the last incremental check's JointResult (incremental.py)
        self.last_cone: Any = None  # the last cone check's ConeResult (incremental.agrees_again)

    def snapshot(self, graph: gs.Graph) -> onnx.ModelProto:
        return snapshot(graph, self.like)

    def outputs_of(self, model: onnx.ModelProto) -> tuple[dict, dict] | None:
        return self.memo.get(_digest(model))

    def _run(self, model: onnx.ModelProto) -> dict:
        key = _digest(model)
        if key not in self.memo:
            from trtforge.graphs.evaluate import Evaluator

            feeds = feeds_for(model, self.recorded)
            ev = Evaluator(model, self.weights, "fp32", sessions=self.sessions)
            self.memo[key] = (feeds, ev.run(feeds))
            self.nodes_evaluated += ev.nodes_run
        return self.memo[key][1]

    def _run_stored(self, model: onnx.ModelProto, stored: set[str]) -> dict:
        """`model` widened to FP32, except that the tensors in `stored` are rounded to FP16 where
        they are computed: what a folding pass stores for them in the FP16 graph, which declares
        them FP16 (fold_constants folds in FP32, then stores the graph's dtype)."""
        feeds = feeds_for(model, self.recorded)
        from trtforge.graphs.evaluate import Evaluator

        ev = Evaluator(model, self.weights, "fp32", sessions=self.sessions)
        out = ev.run(feeds, observe=_rounding(stored))
        self.nodes_evaluated += ev.nodes_run
        return out

    def _jointly(self, before: onnx.ModelProto, after: onnx.ModelProto, stored: set[str]) -> bool:
        from trtforge.graph_passes.incremental import can_run_jointly

        if self.incremental is False or not can_run_jointly(before, after):
            return False
        if not stored and _digest(before) in self.memo:  # its outputs are at hand: only the after runs
            return False
        return self._node_by_node(before)

    def _check_jointly(self, passes: list, before: onnx.ModelProto, after: onnx.ModelProto, stored: set[str]) -> str:
        """One sweep of the graph before, and of the graph after only the region that differs."""
        from trtforge.graph_passes.incremental import evaluate_jointly

        feeds = feeds_for(before, self.recorded)
        res, skipped = self._both(evaluate_jointly, passes, before, after, stored, feeds)
        if skipped is not None:
            return skipped
        self.last_joint = res
        self.nodes_evaluated += res.nodes_before + res.nodes_after
        if not stored:  # the rounded run is not the graph before's meaning
            self.memo[_digest(before)] = (feeds, res.before)
        self.memo[_digest(after)] = (feeds, res.after)
        verdict = _held(compare(passes, res.before, res.after), stored)
        spread = " (the change spread through the graph: it ran whole)" if res.gave_up else ""
        return f"{verdict}; {res.nodes_after} of {res.nodes_total} node(s) after the pass evaluated{spread}"

    def _both(self, sweep, passes: list, before, after, stored: set[str], feeds: dict) -> tuple[Any, str | None]:
        """`sweep` (incremental.evaluate_jointly or agrees_again) over both graphs, FP16 storage
        rounded where a fold stored it; a graph before that cannot run is the verdict (_guarded)."""
        names = " + ".join(p.name for p in passes)
        return _guarded(names, lambda: sweep(before, after, self.weights, feeds, self.sessions, _rounding(stored)))

    def _node_by_node(self, before: onnx.ModelProto) -> bool:
        """Whether checks of this graph run node by node (incremental), not as whole sessions."""
        from trtforge.graphs.evaluate import WHOLE_GRAPH_BYTES
        from trtforge.graphs.files import weight_bytes

        if self.incremental is None:
            return weight_bytes(before) > WHOLE_GRAPH_BYTES
        return self.incremental

    def _check_cone(
        self, passes: list, before: onnx.ModelProto, after: onnx.ModelProto, stored: set[str]
    ) -> str | None:
        """The verdict from the nodes the pass changed and the cone of the graph before they read
        (incremental.agrees_again), or None where that cannot show it."""
        from trtforge.graph_passes.incremental import agrees_again

        res, skipped = self._both(agrees_again, passes, before, after, stored, feeds_for(before, self.recorded))
        if skipped is not None:
            return skipped
        if res is None:
            return None
        self.last_cone = res
        self.nodes_evaluated += res.nodes_before + res.nodes_after
        verdict = _held("identical" if all(p.exact for p in passes) else "within tolerance (max abs diff 0)", stored)
        if not res.nodes_after:
            return f"{verdict}; the same nodes as before the pass, nothing evaluated"
        return (
            f"{verdict}; {res.nodes_after} of {res.nodes_total} node(s) after the pass evaluated and "
            f"{res.nodes_before} of {res.before_total} before: the nodes it changed compute the same "
            "values, so nothing downstream of them ran"
        )

    def __call__(self, passes: list, before: onnx.ModelProto, graph) -> str:
        after = graph if isinstance(graph, onnx.ModelProto) else self.snapshot(graph)
        names = " + ".join(p.name for p in passes)
        stored = set().union(*(p.stored_fp16() for p in passes))
        if self._node_by_node(before):
            verdict = self._check_cone(passes, before, after, stored)
            if verdict is not None:
                return verdict
        if not stored and self.incremental is not False:
            from trtforge.graph_passes.incremental import same_outputs

            if same_outputs(before, after):  # node for node the graph before: only it runs, if not yet
                try:
                    outs = self._run(before)
                except Exception as e:
                    return (
                        f"not checked: ONNX Runtime cannot run the graph before {names}: {str(e).splitlines()[0][:200]}"
                    )
                feeds = self.memo[_digest(before)][0]
                self.memo[_digest(after)] = (
                    feeds,
                    {o.name: outs[o.name] for o in after.graph.output if o.name in outs},
                )
                verdict = compare(passes, outs, self.memo[_digest(after)][1])
                return f"{verdict}; the same nodes as before the pass, not evaluated after it"
        if self._jointly(before, after, stored):
            return self._check_jointly(passes, before, after, stored)
        try:
            out_before = self._run_stored(before, stored) if stored else self._run(before)
        except Exception as e:  # the graph before ran in the export check; say so if it cannot here
            return f"not checked: ONNX Runtime cannot run the graph before {names}: {str(e).splitlines()[0][:200]}"
        try:
            out_after = self._run(after)
        except Exception as e:
            raise PassError(
                f"ONNX Runtime cannot run the graph after the pass: {type(e).__name__}: {str(e).splitlines()[0][:200]}",
                where=f"pass {names}",
            ) from e
        return _held(compare(passes, out_before, out_after), stored)


def _digest(model: onnx.ModelProto) -> bytes:
    import hashlib

    return hashlib.sha256(model.SerializeToString()).digest()


def _rounding(stored: set[str]):
    """An evaluator `observe` hook rounding the tensors in `stored` to FP16 where they are computed
    (what a folding pass stores for them in the FP16 graph), or None when there are none."""
    if not stored:
        return None

    def round_stored(name: str, value: np.ndarray) -> None:
        if name in stored and value.dtype == np.float32:
            value[...] = value.astype(np.float16)  # in place: the evaluator reads this array on

    return round_stored


def _held(verdict: str, stored: set[str]) -> str:
    """The verdict, saying how many folded tensors were held at their FP16 storage."""
    return f"{verdict}, {len(stored)} folded tensor(s) held at their FP16 storage" if stored else verdict


def _guarded(names: str, run) -> tuple[Any, str | None]:
    """run()'s result, or the verdict where the graph before cannot run (no pass is blamed); a
    graph after that cannot run is PassError naming the passes."""
    from trtforge.graph_passes.incremental import BeforeFailed
    from trtforge.graphs.evaluate import EvalError

    try:
        return run(), None
    except BeforeFailed as e:
        return None, f"not checked: ONNX Runtime cannot run the graph before {names}: {str(e).splitlines()[0][:200]}"
    except EvalError as e:
        raise PassError(
            f"ONNX Runtime cannot run the graph after the pass: {type(e).__name__}: {str(e).splitlines()[0][:200]}",
            where=f"pass {names}",
        ) from e
