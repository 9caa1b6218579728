"""Incremental meaning checks: the graph after a pass is evaluated only where it differs from the
graph before, in one sweep with the graph before.

The graph before runs node by node (trtforge.graphs.evaluate, fp32 mode) as in a full check. The graph
after is compared with it structurally first (no values): a node of the graph after whose
operator, attributes, input and output names match the node of the graph before that computes
the same outputs, and whose inputs all hold the same values, computes the same values. The rest
(the nodes the pass added or rewrote, and what they feed) is the *region*; only it runs, in the
same sweep, reading the real tensors the graph before computes. Where a region node's output
comes out bit-identical to the graph before's tensor of that name, its consumers are no longer
affected: a consumer that the pass left alone is skipped and reads the graph before's value.

Memory: the graph before holds, beyond its own live tensors, only what the region reads from it
(worked out from structure before the sweep) and each region output's "before" value until it
has been compared; a region node runs as soon as those are there, so they are short-lived. A
change that spreads through the whole graph would hold both graphs' activations: past
EXTRA_SHARE the sweep gives the region up and runs the graph after whole once the before is done.
Nothing is kept across checks and nothing is spilled to disk: an SD1.5 UNet's activations,
all kept, are several GiB, more than the evaluator's whole peak (~1.45 GiB).

Both graphs' nodes run through the same node sessions, so a node that computes the same thing
gives the same bits in both, and exact passes are still held to bit-identical outputs.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from trtforge.graphs.evaluate import EvalError, Evaluator, _constant_value

# Where the region holds more than this share of the graph before's own peak of live tensors (or
# EXTRA_FLOOR bytes, whichever is more), the change has spread through the graph: nothing agrees
# again, so the region is the graph and its tensors live beside the before's (2x the memory of one
# evaluation; a mid-size UNet with its first Conv's weights moved: 99 MiB of tensors against 66).
# The sweep then drops the region, finishes the graph before, and runs the graph after whole:
# the memory of one evaluation, the time of two, as without incremental checks.
EXTRA_SHARE = 0.25
EXTRA_FLOOR = 32 << 20


class BeforeFailed(RuntimeError):
    """The graph before could not be evaluated (the check says so; no pass is blamed)."""


@dataclass
class JointResult:
    before: dict  # the graph before's outputs
    after: dict  # the graph after's outputs
    nodes_before: int  # nodes of the graph before that ran (all of them)
    nodes_after: int  # nodes of the graph after that ran (the region less what agreed again)
    region: int  # nodes of the graph after that differ by structure or read what does
    nodes_total: int  # nodes of the graph after
    peak_bytes: int
    gave_up: bool = False  # the region spread: the graph after ran whole, after the sweep (EXTRA_SHARE)


def _sig(node: onnx.NodeProto) -> tuple:
    return (
        node.domain,
        node.op_type,
        tuple(node.input),
        tuple(node.output),
        b"".join(a.SerializeToString() for a in node.attribute),
    )


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and bool(np.array_equal(a, b, equal_nan=np.issubdtype(a.dtype, np.floating)))
    )


def can_run_jointly(before: onnx.ModelProto, after: onnx.ModelProto) -> bool:
    """Same graph inputs, no subgraphs (their nodes read outer tensors a node session lacks)."""

    def subgraphs(m: onnx.ModelProto) -> bool:
        return any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in m.graph.node for a in n.attribute
        )

    names = [(i.name, i.type.SerializeToString()) for i in before.graph.input]
    return names == [(i.name, i.type.SerializeToString()) for i in after.graph.input] and not (
        subgraphs(before) or subgraphs(after)
    )


def plan(before: onnx.ModelProto, after_nodes: list, after_initializers: dict) -> tuple[dict, set, list]:
    """From structure alone: the graph before's producer signatures, the tensors of the graph
    after that hold the graph before's values, and the region (node, the pass left it alone) of
    the graph after (`after_nodes` in topological order) that differs or reads what does."""
    b_sig: dict[str, tuple] = {}
    for node in before.graph.node:
        s = _sig(node)
        for o in node.output:
            if o:
                b_sig[o] = s
    b_init = {t.name: t for t in before.graph.initializer}
    same: set[str] = {i.name for i in before.graph.input}
    for name, t in after_initializers.items():
        bt = b_init.get(name)
        if bt is not None and (bt is t or bt.SerializeToString() == t.SerializeToString()):
            same.add(name)
    region: list[tuple[onnx.NodeProto, bool]] = []
    for node in after_nodes:
        outs = [o for o in node.output if o]
        s = _sig(node)
        kept = bool(outs) and all(b_sig.get(o) == s for o in outs)
        if kept and all(n in same for n in node.input if n):
            same.update(outs)
        else:
            region.append((node, kept))
    return b_sig, same, region


def same_outputs(before: onnx.ModelProto, after: onnx.ModelProto) -> bool:
    """The graph after computes every output as the graph before does, node for node (a pass
    that only reorders or renames nodes, or drops dead ones): its outputs are the before's."""
    from trtforge.graphs.evaluate import _toposorted

    if not can_run_jointly(before, after):
        return False
    _, same, region = plan(before, _toposorted(after.graph), {t.name: t for t in after.graph.initializer})
    b_outs = {o.name for o in before.graph.output}
    return not region and all(o.name in same and o.name in b_outs for o in after.graph.output)


def evaluate_jointly(
    before: onnx.ModelProto,
    after: onnx.ModelProto,
    weights: Path,
    feeds: dict,
    sessions=None,
    observe_before: Callable[[str, np.ndarray], None] | None = None,
) -> JointResult:
    """Both graphs' outputs (fp32 mode) from one full evaluation of `before` and the region of
    `after`. Raises BeforeFailed where `before` cannot run, EvalError where `after` cannot."""
    eb = Evaluator(before, weights, "fp32", sessions=sessions)
    ea = Evaluator(after, weights, "fp32", sessions=eb._sessions)

    b_sig, same, region = plan(before, ea.nodes, ea.initializers)
    inputs = {i.name for i in after.graph.input}

    # what the region reads from the graph before, and the before values its outputs are
    # compared with; a region node runs as soon as these and its region inputs are there
    from_before: Counter[str] = Counter()  # before tensor -> region nodes still to read it
    a_uses: Counter[str] = Counter()  # region-held tensor -> region nodes still to read it
    waits: list[list[str]] = []
    deps = [0] * len(region)
    on_before: dict[str, list[int]] = {}  # before tensor -> region nodes waiting for it
    on_region: dict[str, list[int]] = {}  # region output -> region nodes waiting for it
    produced = {o for node, _ in region for o in node.output if o}
    for k, (node, _) in enumerate(region):
        for n in dict.fromkeys(node.input):
            if not n:
                continue
            if n in produced:
                on_region.setdefault(n, []).append(k)
                deps[k] += 1
                a_uses[n] += 1
            elif n in same and n in b_sig:
                on_before.setdefault(n, []).append(k)
                deps[k] += 1
                from_before[n] += 1
            else:
                a_uses[n] += 1  # a graph input or an initializer of the graph after
        w = [o for o in node.output if o and o in b_sig]
        waits.append(w)
        for o in w:
            on_before.setdefault(o, []).append(k)
            deps[k] += 1
            from_before[o] += 1
    final_from_before = {o for o in ea.outputs if o in same and o in b_sig}
    a_hold = set(ea.outputs)

    # -- the sweep -----------------------------------------------------------------------
    b_env: dict[str, np.ndarray] = {}
    a_env: dict[str, np.ndarray] = {}
    deferred: set[str] = set()  # freed by the graph before, held for the region
    agreed: set[str] = set()  # region outputs bit-identical to the graph before's
    b_hold = set(eb.outputs) | final_from_before
    ready = deque(k for k in range(len(region)) if deps[k] == 0)
    done = 0
    nodes_after = 0
    peak = b_peak = 0
    gave_up = False

    def live() -> tuple[int, int]:
        """Bytes held: by the graph before for itself, and for the region (its own tensors and
        the before tensors kept for it)."""
        own = {id(v): v.nbytes for k, v in b_env.items() if k not in deferred}
        extra = {id(v): v.nbytes for k, v in b_env.items() if k in deferred}
        extra.update({id(v): v.nbytes for v in a_env.values() if id(v) not in own})
        return sum(own.values()), sum(extra.values())

    def a_value(n: str) -> np.ndarray:
        if n in a_env:
            return a_env[n]
        if n in inputs or n in ea.initializers:
            # a weight the graph before holds (the same bytes) is not read twice
            a_env[n] = b_env[n] if n in same and n in b_env else _graph_value(ea, feeds, n)
            return a_env[n]
        if n in b_env:
            return b_env[n]
        raise EvalError(f"reads '{n}', which nothing computed")

    def release_before(n: str) -> None:
        from_before[n] -= 1
        if from_before[n] <= 0 and n in deferred:
            deferred.discard(n)
            b_env.pop(n, None)

    def release_region(n: str) -> None:
        a_uses[n] -= 1
        if a_uses[n] <= 0 and n not in a_hold:
            a_env.pop(n, None)

    def process(k: int) -> None:
        nonlocal nodes_after, done
        node, kept = region[k]
        ins = [n for n in dict.fromkeys(node.input) if n]
        outs = [o for o in node.output if o]
        if kept and all(n in same or n in agreed for n in ins):
            for o in outs:  # the pass left it alone and its inputs agree: the before values
                a_env[o] = b_env[o]
                agreed.add(o)
        else:
            try:
                if node.op_type == "Constant":
                    results = [ea._widen(_constant_value(node))]
                else:
                    args = [a_value(n) for n in ins]
                    sess, names = ea._session(node, args)
                    results = sess.run(None, dict(zip(names, args)))
            except Exception as e:  # noqa: BLE001 - named for the caller
                first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
                raise EvalError(f"node '{node.name}' ({node.op_type}): {first}") from e
            nodes_after += 1
            for o, v in zip(outs, results):
                a_env[o] = v
                if o in b_env and _equal(v, b_env[o]):
                    agreed.add(o)
        done += 1
        for n in ins:
            if n in produced or n not in b_sig or n not in same:
                release_region(n)
            else:
                release_before(n)
        for o in waits[k]:
            release_before(o)
        for o in outs:
            for c in on_region.get(o, ()):
                deps[c] -= 1
                if deps[c] == 0:
                    ready.append(c)
            if a_uses[o] <= 0 and o not in a_hold:
                a_env.pop(o, None)

    def computed_before(name: str) -> None:
        for c in on_before.get(name, ()):
            deps[c] -= 1
            if deps[c] == 0:
                ready.append(c)

    def drain() -> None:
        while ready:
            process(ready.popleft())

    for name, value in feeds.items():
        b_env[name] = eb._widen(np.asarray(value))
        if observe_before is not None:
            observe_before(name, b_env[name])
    drain()
    for i, node in enumerate(eb.nodes):
        try:
            if node.op_type == "Constant":
                results = [eb._widen(_constant_value(node))]
                ins = []
            else:
                ins = [n for n in dict.fromkeys(node.input) if n]
                for n in ins:
                    if n not in b_env:
                        if n not in eb.initializers:
                            raise EvalError(f"node '{node.name}' ({node.op_type}) reads '{n}', which nothing computed")
                        b_env[n] = eb._load(n)
                args = [b_env[n] for n in ins]
                sess, names = eb._session(node, args)
                results = sess.run(None, dict(zip(names, args)))
        except Exception as e:  # noqa: BLE001
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise BeforeFailed(f"node '{node.name}' ({node.op_type}): {first}") from e
        for name, value in zip([o for o in node.output if o], results):
            b_env[name] = value
            if observe_before is not None:
                observe_before(name, value)
            computed_before(name)
        if not gave_up:
            drain()
            own, extra = live()
            b_peak = max(b_peak, own)
            peak = max(peak, own + extra)
            if extra > max(EXTRA_FLOOR, EXTRA_SHARE * b_peak):  # the change spreads: see EXTRA_SHARE
                gave_up = True
                a_env.clear()
                ready.clear()
                on_before.clear()
                for n in deferred:
                    b_env.pop(n, None)
                deferred.clear()
                from_before.clear()
        for n in ins:
            if eb.last_use.get(n) == i and n not in b_hold:
                if from_before[n] > 0:
                    deferred.add(n)
                else:
                    b_env.pop(n)
    if gave_up:  # the graph after whole, node by node (the sessions the before's nodes used)
        b_env = {o: b_env[o] for o in eb.outputs if o in b_env}
        out_after = ea.run(feeds, observe=lambda name, value: None)  # raises EvalError naming a node
        out_before = {
            o: b_env[o] if o in b_env else eb._widen(eb._load(o))
            for o in eb.outputs
            if o in b_env or o in eb.initializers
        }
        return JointResult(
            out_before,
            out_after,
            len(eb.nodes),
            ea.nodes_run,
            len(region),
            len(ea.nodes),
            max(peak, ea.peak_bytes),
            True,
        )
    if done != len(region):  # every before tensor was computed, so every region node was ready
        raise RuntimeError(f"incremental check: {len(region) - done} region node(s) never became ready")
    out_before = {
        o: b_env[o] if o in b_env else eb._widen(eb._load(o)) for o in eb.outputs if o in b_env or o in eb.initializers
    }
    out_after = {}
    for o in ea.outputs:
        if o in a_env:
            out_after[o] = a_env[o]
        elif o in inputs:
            out_after[o] = eb._widen(np.asarray(feeds[o]))
        elif o in ea.initializers:  # an output a pass folded to a constant
            out_after[o] = ea._widen(ea._load(o))
        elif o in b_env:
            out_after[o] = b_env[o]
    return JointResult(out_before, out_after, len(eb.nodes), nodes_after, len(region), len(ea.nodes), peak)


# -- the cone: when the changed nodes agree again ------------------------------------------------
# A pass usually rewrites a few nodes (a folded Shape, an Unsqueeze as a Reshape, an Identity
# bypassed) whose outputs keep their values. Then nothing downstream of them needs running, in
# either graph: the check runs the changed nodes and, of the graph before, only the nodes their
# inputs and compared outputs come from. SD1.5 UNet, default passes: fold_static_shapes rewrote the
# timestep embedding's Unsqueeze; the sweep above ran all 1,572 nodes before (about 20 s, two
# cores), the cone 30-odd. Where a changed node's output differs, or the values the changed nodes
# read and are compared on would hold more than EXTRA_SHARE of the cone's own live tensors (a pass
# that rewrote much of the graph), the joint sweep above runs instead (its memory discipline; the
# verdict names the pass).


@dataclass
class ConeResult:
    nodes_before: int  # nodes of the graph before that ran (the cone the changed nodes read)
    nodes_after: int  # nodes of the graph after that ran (the changed ones)
    nodes_total: int  # nodes of the graph after
    before_total: int  # nodes of the graph before


def agrees_again(
    before: onnx.ModelProto,
    after: onnx.ModelProto,
    weights: Path,
    feeds: dict,
    sessions=None,
    observe_before: Callable[[str, np.ndarray], None] | None = None,
) -> ConeResult | None:
    """The graphs compute bit-identical outputs, shown by running only the nodes the pass changed
    (on the graph before's values of what they read) and finding every output of theirs that the
    graph before also computes identical to it; the nodes the pass left alone downstream then read
    identical values, so their outputs are identical too (nodes are deterministic given their
    inputs). None where that cannot be shown this way: a changed node's output differs, an output
    of the graph after is not the graph before's by structure, or what the changed nodes need
    would be held beyond EXTRA_SHARE (the caller runs evaluate_jointly). Raises EvalError where a changed node
    cannot run, BeforeFailed where the graph before cannot."""
    if not can_run_jointly(before, after):
        return None
    ea = Evaluator(after, weights, "fp32", sessions=sessions)
    b_sig, same, region = plan(before, ea.nodes, ea.initializers)
    agreed = set(same)  # tensors holding the graph before's values: by structure, or once checked
    changed: list[onnx.NodeProto] = []
    for node, kept in region:
        outs = [o for o in node.output if o]
        if kept and all(n in agreed for n in node.input if n):
            agreed.update(outs)
            continue
        changed.append(node)
        agreed.update(o for o in outs if o in b_sig)  # on condition: compared once it ran
    b_outs = [o.name for o in before.graph.output]
    if sorted(b_outs) != sorted(o.name for o in after.graph.output) or not all(o in agreed for o in b_outs):
        return None
    produced = {o for node in changed for o in node.output if o}
    wanted = {n for node in changed for n in node.input if n and n not in produced and n in agreed and n in b_sig}
    wanted |= produced & set(b_sig)

    eb = Evaluator(before, weights, "fp32", sessions=ea._sessions)
    producer = {o: i for i, node in enumerate(eb.nodes) for o in node.output if o}
    cone: set[int] = set()
    stack = [producer[t] for t in wanted]
    while stack:
        i = stack.pop()
        if i in cone:
            continue
        cone.add(i)
        stack.extend(producer[n] for n in eb.nodes[i].input if n in producer)

    uses: Counter[str] = Counter(n for i in cone for n in dict.fromkeys(eb.nodes[i].input) if n)
    env: dict[str, np.ndarray] = {}
    size = {"own": 0, "held": 0, "peak": 0}  # bytes: the cone's live tensors, and `wanted` ones

    def keep(n: str, v: np.ndarray) -> None:
        env[n] = v
        size["held" if n in wanted else "own"] += v.nbytes
        size["peak"] = max(size["peak"], size["own"])

    def before_value(n: str) -> np.ndarray:
        if n not in env:
            keep(n, _graph_value(eb, feeds, n))
            if observe_before is not None:
                observe_before(n, env[n])
        return env[n]

    for i in sorted(cone):  # eb.nodes is in topological order
        node = eb.nodes[i]
        ins = [n for n in dict.fromkeys(node.input) if n]
        results = _run_node(eb, node, before_value, BeforeFailed)
        for o, v in zip([o for o in node.output if o], results):
            if uses[o] > 0 or o in wanted:
                keep(o, v)
            if observe_before is not None:
                observe_before(o, v)
        for n in ins:
            uses[n] -= 1
            if uses[n] <= 0 and n not in wanted and n in env:
                size["own"] -= env.pop(n).nbytes
        if size["held"] > max(EXTRA_FLOOR, EXTRA_SHARE * size["peak"]):
            return None  # the pass rewrote much of the graph: the joint sweep holds less

    a_env: dict[str, np.ndarray] = {}

    def after_value(n: str) -> np.ndarray:
        if n in a_env:  # computed by a changed node before this one
            return a_env[n]
        if n in agreed:  # the graph before's value (a graph input, a shared weight, the cone)
            return before_value(n)
        if n in ea.initializers:  # a weight the pass wrote
            return ea._widen(ea._load(n))
        raise EvalError(f"reads '{n}', which nothing computed")

    for node in changed:
        results = _run_node(ea, node, after_value, EvalError)
        for o, v in zip([o for o in node.output if o], results):
            if o in b_sig and not _equal(v, env[o]):
                return None
            a_env[o] = v
    return ConeResult(len(cone), len(changed), len(ea.nodes), len(eb.nodes))


def _graph_value(ev: Evaluator, feeds: dict, n: str) -> np.ndarray:
    """What no node computes: a graph input (widened as `ev` runs it) or a weight."""
    if n in feeds:
        return ev._widen(np.asarray(feeds[n]))
    if n in ev.initializers:
        return ev._load(n)
    raise EvalError(f"reads '{n}', which nothing computed")


def _run_node(ev: Evaluator, node: onnx.NodeProto, value: Callable[[str], np.ndarray], error: type) -> list:
    """One node's outputs: a Constant's value, else its node session on `value(name)` of each input;
    any failure is `error` naming the node."""
    try:
        if node.op_type == "Constant":
            return [ev._widen(_constant_value(node))]
        args = [value(n) for n in dict.fromkeys(node.input) if n]
        sess, names = ev._session(node, args)
        return sess.run(None, dict(zip(names, args)))
    except Exception as e:  # noqa: BLE001 - named for the caller
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise error(f"node '{node.name}' ({node.op_type}): {first}") from e
