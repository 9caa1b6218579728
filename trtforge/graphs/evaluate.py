"""A streaming ONNX evaluator: node by node with ONNX Runtime, memory bounded by the live activations.

Every check that runs a stage's ONNX goes through here, on models of any size:
- weights are read from their external-data files when a node first needs them and dropped after
  their last use, as is every activation (a diffusion UNet's 1.6-5 GB of FP16 weights are never all
  in memory at once, and no ONNX Runtime session ever holds them);
- `mode="fp16"` is FP16-faithful: each node runs alone, so its result is stored in its own dtype.
  ONNX Runtime's CPU provider computes FP16 MatMul/Softmax in FP32 and drops the Casts between
  consecutive ops even with optimisations off, so a whole-graph session hides FP16 overflow;
  measured: a ViT with attention scores of 3.8e5 was 0.1% off in a plain CPU run and NaN everywhere
  once every FP16 tensor was really stored as FP16;
- `mode="fp32"` widens the graph as it goes (FP16 weights, inputs, Constants and Cast targets become
  FP32): the graph's function in FP32, which says whether a stage kept the module's meaning
  independently of FP16 range (what the export and graph-pass checks ask);
- one ONNX Runtime session per distinct node (op, attributes, input types and shapes), reused for
  every node alike: a UNet repeats the same few hundred node shapes across its blocks;
- where onnxruntime-gpu is installed, a GPU is present and ONNX Runtime's CUDA provider really
  loads (`choose_provider`, the one place that decides; TRTFORGE_EVAL_DEVICE=cpu forces the CPU),
  the sessions run on CUDA: there FP16 MatMul/Softmax/Conv are FP16 GPU kernels that store FP16
  (an overflowing FP16 attention is NaN, as in the CPU's node-by-node emulation), and the widened
  mode runs FP32 kernels (TF32 off). A graph whose weights serialise under CUDA_WHOLE_GRAPH_BYTES
  runs whole in one session with optimisations off (the same kernels node for node, so FP16
  results stay stored in FP16 between nodes); a larger one, or a run that keeps or observes
  tensors, runs node by node on CUDA. On a CPU-only machine nothing differs from before.
Nodes are deterministic given their inputs, so two graphs that compute the same nodes give
bit-identical outputs: restructuring passes are checked for exact equality with this evaluator.
"""

from __future__ import annotations

import functools
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from trtforge.graphs.cycles import cycle_error
from trtforge.graphs.files import read_tensor, weight_bytes

F16, F32 = TensorProto.FLOAT16, TensorProto.FLOAT
# attributes that name an output dtype; widened from FP16 to FP32 in fp32 mode
DTYPE_ATTRS = {
    "Cast": "to",
    "EyeLike": "dtype",
    "RandomNormal": "dtype",
    "RandomUniform": "dtype",
    "RandomNormalLike": "dtype",
    "RandomUniformLike": "dtype",
}
SESSION_CACHE = 1024  # distinct node sessions kept; each holds no weights (they are feeds)
# fp32 mode runs graphs with at most this many bytes of weights in one session (fast set-up)
WHOLE_GRAPH_BYTES = 64 << 20
CPU_EP, CUDA_EP = "CPUExecutionProvider", "CUDAExecutionProvider"
DEVICE_ENV = "TRTFORGE_EVAL_DEVICE"  # "cpu": never CUDA; "auto" (default): CUDA where it really loads
# on CUDA, graphs whose weights (as run: widened in fp32 mode) are at most this many bytes run whole
# in one session: the serialised model stays under protobuf's 2 GB limit
CUDA_WHOLE_GRAPH_BYTES = 1536 << 20
# the CUDA kernels the checks need: FP32 really FP32 (ONNX Runtime turns TF32 on by default, a
# 1e-3 relative error in every FP32 MatMul/Conv), and cuDNN's heuristic algorithm choice rather
# than a timed search, so the same node runs the same kernel in every session (restructuring
# passes are checked for bit-identical outputs); the arena grows only by what is asked
CUDA_OPTIONS = {
    "use_tf32": "0",
    "cudnn_conv_algo_search": "HEURISTIC",
    "arena_extend_strategy": "kSameAsRequested",
}


def cuda_unusable() -> str | None:
    """Why ONNX Runtime's CUDA provider cannot run the checks here; None when it may (it may still
    fail to load its CUDA libraries: `choose_provider` tries)."""
    import onnxruntime as ort

    from trtforge import backends as be

    if CUDA_EP not in ort.get_available_providers():
        return "onnxruntime has no CUDA provider here (pip install 'trtforge[gpu]')"
    if not be.gpus():
        return "no NVIDIA GPU on this machine"
    preload = getattr(ort, "preload_dlls", None)  # CUDA/cuDNN from the nvidia pip packages (ORT >= 1.21)
    if preload is not None:
        try:
            preload()
        except Exception:  # noqa: BLE001 - the probe session reports what is really missing
            pass
    return None


def ort_providers(provider: str) -> list:
    """The providers list for a session on `provider` (CUDA keeps the CPU for the shape ops ONNX
    Runtime places there)."""
    return [(CUDA_EP, dict(CUDA_OPTIONS)), CPU_EP] if provider == CUDA_EP else [CPU_EP]


# the probe's IR version and opset: what every onnxruntime >= 1.18 reads (onnx's own default can be
# newer than the onnxruntime beside it: onnx 1.23 writes IR 14, onnxruntime-gpu 1.31 reads up to 13)
PROBE_IR, PROBE_OPSET = 8, 17


def _probe_model() -> bytes:
    g = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "probe",
        [onnx.helper.make_tensor_value_info("x", F32, [1])],
        [onnx.helper.make_tensor_value_info("y", F32, [1])],
    )
    opset = [onnx.helper.make_opsetid("", PROBE_OPSET)]
    return onnx.helper.make_model(g, ir_version=PROBE_IR, opset_imports=opset).SerializeToString()


@functools.cache
def _cuda_loads() -> str | None:
    """None when a session on the CUDA provider really runs on it, else why not (ONNX Runtime
    silently falls back to the CPU when its CUDA/cuDNN libraries do not load). Once a process."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(_probe_model(), sess_options=opts, providers=ort_providers(CUDA_EP))
    except Exception as e:  # noqa: BLE001 - the reason is what the caller reports
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        # ONNX Runtime's messages end with the cause, after the source location and signature
        return f"ONNX Runtime's CUDA provider failed to start: {first if len(first) <= 240 else '...' + first[-240:]}"
    got = sess.get_providers()
    if CUDA_EP not in got:
        return f"ONNX Runtime provider {CUDA_EP} requested but {got} is running"
    return None


def choose_provider() -> tuple[str, str | None]:
    """(the provider every evaluation runs on, why not CUDA or None): the one place that decides.
    CUDA where onnxruntime-gpu is installed, a GPU is present and the provider really loads, unless
    TRTFORGE_EVAL_DEVICE=cpu; else the CPU, as on every CPU-only machine."""
    want = os.environ.get(DEVICE_ENV, "").strip().lower() or "auto"
    if want not in ("auto", "cpu"):
        from trtforge.errors import VerifySetupError

        raise VerifySetupError(
            f"{DEVICE_ENV}={want!r} is not a device the checks run on",
            hint=f"set {DEVICE_ENV} to 'cpu' or 'auto' (or unset it)",
        )
    if want == "cpu":
        return CPU_EP, f"{DEVICE_ENV}=cpu"
    why = cuda_unusable()
    if why is None:
        why = _cuda_loads()
    return (CPU_EP, why) if why is not None else (CUDA_EP, None)


def _widen_tensor(t: onnx.TensorProto, base_dir: Path | None) -> onnx.TensorProto:
    """FP16 -> FP32; any external tensor is read in (the copy is self-contained)."""
    external = t.data_location == TensorProto.EXTERNAL
    if t.data_type != F16 and not external:
        return t
    arr = read_tensor(t, base_dir) if base_dir is not None else numpy_helper.to_array(t)
    return numpy_helper.from_array(arr.astype(np.float32) if arr.dtype == np.float16 else arr, t.name)


def _widen_type(vi) -> None:
    tt = vi.type.tensor_type
    if tt.elem_type == F16:
        tt.elem_type = F32


def widen_to_fp32(model: onnx.ModelProto, base_dir: Path | None = None) -> onnx.ModelProto:
    """A self-contained FP32 copy of an FP16 graph (weights read in, types widened)."""
    g = model.graph
    out = onnx.ModelProto()
    out.CopyFrom(model)
    og = out.graph
    del og.initializer[:]
    og.initializer.extend(_widen_tensor(t, base_dir) for t in g.initializer)
    for vi in (*og.input, *og.output, *og.value_info):
        _widen_type(vi)
    widened = [_widen_node(node) for node in og.node]
    del og.node[:]
    og.node.extend(widened)
    return out


def self_contained(model: onnx.ModelProto, base_dir: Path | None) -> onnx.ModelProto:
    """A copy of the graph with its external weights read in, dtypes unchanged."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    if base_dir is None:
        return out
    og = out.graph
    inline = [
        numpy_helper.from_array(read_tensor(t, base_dir), t.name) if t.data_location == TensorProto.EXTERNAL else t
        for t in model.graph.initializer
    ]
    del og.initializer[:]
    og.initializer.extend(inline)
    return out


# a node session whose inputs hold fewer elements than this runs on one thread: a session with
# its own thread pool starts threads and joins them when dropped, 24 ms a session on 2 cores (0.9 s
# of a 1.0 s verify stage on a tiny GPT-2, 37 node sessions; 1 ms on one thread). Larger nodes
# (a UNet's convolutions) keep ONNX Runtime's intra-op threads, whose set-up their work dwarfs.
# (ONNX Runtime's process-wide pool would serve both, but once set up it forbids per-session
# pools to every other session in the process, the caller's own included.)
ONE_THREAD_BELOW = 1 << 20


def session_options(ort, elements: int | None = None):
    """Options for the evaluator's CPU sessions: optimisations off, quiet, intra-op threads that
    sleep when idle; one thread for a node with fewer than ONE_THREAD_BELOW input elements (None:
    a whole graph, default threads).

    Not spinning: ONNX Runtime's pool threads spin after each run by default, and the evaluator
    keeps up to SESSION_CACHE node sessions, each with its own pool, so the pools of the nodes just
    run spun against the one running. Measured on an SD1.5 UNet's precision graph (1,571 nodes, 2
    cores, FP16-faithful): 41.1 s spinning, 20.0 s not (MatMul 18.0 -> 7.5 s, Conv 13.9 -> 5.6 s);
    a single MatMul session alone runs as fast either way."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if elements is not None and elements < ONE_THREAD_BELOW:
        opts.intra_op_num_threads = 1
    return opts


class EvalError(RuntimeError):
    """A node ONNX Runtime could not run; names the node."""


def _constant_value(node: onnx.NodeProto) -> np.ndarray:
    attr = node.attribute[0]
    if attr.name == "value":
        return numpy_helper.to_array(attr.t)
    return np.asarray(onnx.helper.get_attribute_value(attr))


def _widen_node(node: onnx.NodeProto) -> onnx.NodeProto:
    out = onnx.NodeProto()
    out.CopyFrom(node)
    for a in out.attribute:
        if a.name == DTYPE_ATTRS.get(out.op_type) and a.i == F16:
            a.i = F32
        elif a.type == onnx.AttributeProto.TENSOR:
            a.t.CopyFrom(_widen_tensor(a.t, None))
    return out


def _has_subgraphs(graph: onnx.GraphProto) -> bool:
    return any(
        a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for node in graph.node for a in node.attribute
    )


def _toposorted(graph: onnx.GraphProto) -> list:
    """The nodes in an order where every input is computed first (a pass may append nodes)."""
    nodes = list(graph.node)
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    producer = {o: i for i, node in enumerate(nodes) for o in node.output if o}
    fed = next((o for o in producer if o in ready and o), None)
    if fed is not None:  # a graph input that a node also computes: the graph feeds itself
        node = nodes[producer[fed]]
        raise cycle_error(f"node '{node.name}' ({node.op_type}), whose output '{fed}' is also a graph input")
    order, state = [], [0] * len(nodes)  # 0 new, 1 on the stack, 2 placed
    for start in range(len(nodes)):
        stack = [(start, 0)]
        while stack:
            i, j = stack.pop()
            if state[i] == 2:
                continue
            state[i] = 1
            ins = nodes[i].input
            while j < len(ins) and (ins[j] in ready or producer.get(ins[j]) is None or state[producer[ins[j]]] == 2):
                j += 1
            if j < len(ins):
                dep = producer[ins[j]]
                if state[dep] == 1:
                    raise cycle_error(f"node '{nodes[dep].name}' ({nodes[dep].op_type})")
                stack.append((i, j + 1))
                stack.append((dep, 0))
                continue
            state[i] = 2
            order.append(nodes[i])
    return order


class Evaluator:
    """Run one ONNX graph (loaded without its weights; they stay in `base_dir`) node by node."""

    def __init__(
        self,
        model: onnx.ModelProto,
        base_dir: Path | None,
        mode: str = "fp16",
        sessions: OrderedDict | None = None,
        provider: str | None = None,
    ):
        """`provider`: CPU_EP or CUDA_EP; None: `choose_provider()`'s choice."""
        if mode not in ("fp16", "fp32"):
            raise ValueError(f"mode {mode!r}")
        if provider not in (None, CPU_EP, CUDA_EP):
            raise ValueError(f"provider {provider!r}")
        self.model, self.base_dir, self.mode = model, base_dir, mode
        self.provider = provider if provider is not None else choose_provider()[0]
        self.graph = model.graph
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.outputs = [o.name for o in self.graph.output]
        self.opsets = list(model.opset_import)
        # shareable between evaluators of similar graphs (a pass's before and after)
        self._sessions: OrderedDict[tuple, Any] = OrderedDict() if sessions is None else sessions
        self.nodes = _toposorted(self.graph)
        last: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            for name in node.input:
                if name:
                    last[name] = i
        self.last_use = last
        self.peak_bytes = 0
        self.nodes_run = 0  # nodes evaluated by the last `run` (a whole-graph session runs them all)
        self._whole: Any = None  # the one session of a small model in fp32 mode (any model that fits, on CUDA)
        self._whole_failed = False  # a whole-graph CUDA session that could not start or run: node by node
        wbytes = weight_bytes(model) * (2 if mode == "fp32" else 1)
        if self.provider == CUDA_EP:  # FP16 kernels store FP16 there: both modes may run whole
            self.small = wbytes <= CUDA_WHOLE_GRAPH_BYTES and not _has_subgraphs(self.graph)
        else:
            self.small = mode == "fp32" and weight_bytes(model) <= WHOLE_GRAPH_BYTES and not _has_subgraphs(self.graph)

    # -- values ---------------------------------------------------------------------------
    def _load(self, name: str) -> np.ndarray:
        # weights stay FP16 here; in fp32 mode the node's session casts them (ONNX Runtime's Cast
        # is vectorised; numpy's float16 astype took 13 s of a 2-minute UNet evaluation)
        return (
            read_tensor(self.initializers[name], self.base_dir)
            if self.base_dir is not None
            else numpy_helper.to_array(self.initializers[name])
        )

    def _widen(self, arr: np.ndarray) -> np.ndarray:
        return arr.astype(np.float32) if self.mode == "fp32" and arr.dtype == np.float16 else arr

    # -- sessions -------------------------------------------------------------------------
    def _session(self, node: onnx.NodeProto, args: list[np.ndarray]):
        """The session for this node's op, attributes, input types and shapes (built on a miss)."""
        names = list(dict.fromkeys(n for n in node.input if n))
        key = (
            self.mode,
            self.provider,
            node.domain,
            node.op_type,
            len(node.output),
            tuple(names.index(n) if n else -1 for n in node.input),
            tuple(o != "" for o in node.output),
            b"".join(a.SerializeToString() for a in node.attribute),
            tuple((a.dtype.str, a.shape) for a in args),
        )
        sess = self._sessions.get(key)
        if sess is None:
            sess = self._new_session(node, names, args)
            self._sessions[key] = sess
            if len(self._sessions) > SESSION_CACHE:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(key)
        return sess, [f"i{j}" for j in range(len(names))]

    def _new_session(self, node: onnx.NodeProto, names: list[str], args: list[np.ndarray]):
        import onnxruntime as ort

        one = onnx.NodeProto()
        one.CopyFrom(_widen_node(node) if self.mode == "fp32" else node)
        one.name, one.doc_string = "n", ""
        del one.metadata_props[:]
        nodes, rename = [], {}
        for j, (n, a) in enumerate(zip(names, args)):
            rename[n] = f"i{j}"
            if self.mode == "fp32" and a.dtype == np.float16:  # widened inside the session
                nodes.append(onnx.helper.make_node("Cast", [f"i{j}"], [f"w{j}"], to=F32))
                rename[n] = f"w{j}"
        for j, name in enumerate(one.input):
            if name:
                one.input[j] = rename[name]
        for j, name in enumerate(one.output):
            if name:
                one.output[j] = f"o{j}"
        inputs = [
            onnx.helper.make_tensor_value_info(f"i{j}", onnx.helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))
            for j, a in enumerate(args)
        ]
        outputs = [onnx.helper.make_empty_tensor_value_info(o) for o in one.output if o]
        single = onnx.helper.make_model(
            onnx.helper.make_graph([*nodes, one], "one", inputs, outputs),
            opset_imports=self.opsets,
            ir_version=self.model.ir_version,
        )
        opts = session_options(ort, sum(int(a.size) for a in args))
        # no arena: a cached session would otherwise keep the largest activations it ever saw
        opts.enable_cpu_mem_arena = False
        opts.enable_mem_pattern = False
        if self.provider == CUDA_EP:
            opts.use_deterministic_compute = True
        return self._checked(
            ort.InferenceSession(single.SerializeToString(), sess_options=opts, providers=ort_providers(self.provider))
        )

    def _checked(self, sess):
        """`sess`, which must run on the provider asked for: ONNX Runtime falls back to the CPU
        silently, and a whole-graph CPU session is not FP16-faithful."""
        got = sess.get_providers()
        if self.provider not in got:
            raise EvalError(f"ONNX Runtime provider {self.provider} requested but {got} is running")
        return sess

    def _run_options(self):
        """CUDA: each node session hands its arena's free blocks back after a run (1024 cached
        sessions would otherwise each keep the largest activations they saw on the GPU)."""
        if self.provider != CUDA_EP:
            return None
        import onnxruntime as ort

        ro = ort.RunOptions()
        ro.add_run_config_entry("memory.enable_memory_arena_shrinkage", "gpu:0")
        return ro

    def _run_whole(self, feeds: dict) -> dict[str, np.ndarray]:
        """Small models in fp32 mode: the widened graph in one session, optimisations off (the same
        kernels node for node, so still deterministic): node-by-node session set-up dominated
        there (toy SDXL UNet, default passes checked: 4.5 s node by node, 0.56 s whole). On CUDA,
        any graph under CUDA_WHOLE_GRAPH_BYTES in either mode: with optimisations off every node
        keeps its own FP16 CUDA kernel, whose output is stored in FP16."""
        import onnxruntime as ort

        if self._whole is None:
            opts = session_options(ort)
            if self.mode == "fp32":
                whole = widen_to_fp32(self.model, self.base_dir)
            else:
                whole = self_contained(self.model, self.base_dir)
            if self.provider == CUDA_EP:
                opts.use_deterministic_compute = True
            self._whole = self._checked(
                ort.InferenceSession(
                    whole.SerializeToString(), sess_options=opts, providers=ort_providers(self.provider)
                )
            )
        names = [i.name for i in self._whole.get_inputs()]
        args = {n: self._widen(np.asarray(feeds[n])) for n in names}
        outs = [o.name for o in self._whole.get_outputs()]
        return dict(zip(outs, self._whole.run(outs, args)))

    # -- running --------------------------------------------------------------------------
    def run(
        self, feeds: dict, keep: set | tuple | str = (), observe: Callable[[str, np.ndarray], None] | None = None
    ) -> dict[str, np.ndarray]:
        """The graph outputs (plus the tensors named in `keep`, or every tensor with keep="all").
        `observe(name, value)` sees every graph input and computed tensor as it appears."""
        if self.small and not keep and observe is None and not self._whole_failed:
            self.nodes_run = len(self.nodes)
            if self.provider != CUDA_EP:
                return self._run_whole(feeds)
            try:
                return self._run_whole(feeds)
            except Exception:  # noqa: BLE001 - out of GPU memory, or a node that fails: node by node names it
                self._whole, self._whole_failed = None, True
        self.nodes_run = 0
        keep_all = keep == "all"
        hold = set(self.outputs) | (set() if keep_all else set(keep))
        env: dict[str, np.ndarray] = {}
        live = 0  # bytes held in env; its maximum is `peak_bytes` (what the streaming buys)
        self.peak_bytes = 0
        for name, value in feeds.items():
            env[name] = self._widen(np.asarray(value))
            live += env[name].nbytes
            if observe is not None:
                observe(name, env[name])
        for i, node in enumerate(self.nodes):
            self.nodes_run += 1
            if node.op_type == "Constant":
                env[node.output[0]] = self._widen(_constant_value(node))
                live += env[node.output[0]].nbytes
                continue
            ins = [n for n in dict.fromkeys(node.input) if n]
            for n in ins:
                if n not in env:
                    if n not in self.initializers:
                        raise EvalError(f"node '{node.name}' ({node.op_type}) reads '{n}', which nothing computed")
                    env[n] = self._load(n)
                    live += env[n].nbytes
            args = [env[n] for n in ins]
            try:
                sess, feed_names = self._session(node, args)
                results = sess.run(None, dict(zip(feed_names, args)), self._run_options())
            except Exception as e:  # noqa: BLE001 - named for the caller; the first line is enough
                first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
                raise EvalError(f"node '{node.name}' ({node.op_type}): {first}") from e
            for name, value in zip([o for o in node.output if o], results):
                env[name] = value
                live += value.nbytes
                if observe is not None:
                    observe(name, value)
            self.peak_bytes = max(self.peak_bytes, live)
            if not keep_all:
                for n in ins:  # free what no later node reads
                    if self.last_use.get(n) == i and n not in hold:
                        live -= env.pop(n).nbytes
        if keep_all:
            return env
        return {n: env[n] for n in hold if n in env}


def evaluate(
    folder: Path, feeds: dict, mode: str = "fp16", keep: set | tuple | str = (), provider: str | None = None
) -> dict[str, np.ndarray]:
    """`folder`/model.onnx (weights beside it) on `feeds`."""
    from trtforge.graphs.files import load_graph_proto

    return Evaluator(load_graph_proto(folder), folder, mode, provider=provider).run(feeds, keep=keep)
