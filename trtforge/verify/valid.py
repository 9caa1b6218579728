"""Which output elements a comparison counts, and whether the FP32 reference can be compared at all.

Valid positions (`verify.outputs.NAME.valid = "INPUT"`): a left-padded batch (what `generate()`
makes) gives outputs at the padded positions that no caller reads; a LLaMA-style model moved them by
0.79 while every real position stayed within 0.001. The input (integer or bool, 1 = a real
position) is broadcast along the output's trailing dims: a mask [batch, seq] selects rows of
logits [batch, seq, vocab]. Its shape must be the output's leading dims (a dim of 1 broadcasts).

A broken reference: the FP32 reference is what every check trusts, so it is checked first. It is
broken when, at the positions compared, a floating-point output
- holds NaN or Inf;
- is constant (at least 2 elements) while some input of the set varies;
- has every row (axis -2, at least 2 rows of at least 2 columns) identical while some input varies
  and no varying input repeats itself along an axis (a one-example file tiled to a batch).
Outputs of 1 element, integer or bool outputs, and outputs of a set whose inputs are all constant are
never judged constant; an output that is constant by design (a mask, a flag map) says so with
`verify.outputs.NAME.constant_ok = true`. A pipeline's reference outputs (trtforge/pipelines/) go
through the same rule as what a user receives (`product`): integer outputs (generated tokens)
are judged too, an empty output is broken, and so is an image of one colour or a batch whose
items are all the same.
"""

from __future__ import annotations

import numpy as np

from trtforge.errors import VerifySetupError, invariant


def lines_up(mask_shape: tuple, out_shape: tuple) -> bool:
    """The mask's shape is the output's leading dims (each equal, or 1 to broadcast)."""
    return len(mask_shape) <= len(out_shape) and all(m in (d, 1) for m, d in zip(mask_shape, out_shape))


def keep_mask(
    output: str, out_shape: tuple, inputs: dict, input_name: str, module: str | None = None, where: str | None = None
) -> np.ndarray:
    """True where the output's element is compared: where input `input_name` is nonzero, broadcast
    along the trailing dims. A shape that does not line up is the manifest's mistake (one line
    naming `where`, the field: a module's verify.outputs.NAME.valid unless told)."""
    where = where or f"verify.outputs.{output}.valid"
    mask = inputs.get(input_name)
    if mask is None:
        raise VerifySetupError(
            f"input '{input_name}' is not among the inputs checked ({', '.join(sorted(inputs))})",
            where=where,
            module=module,
            hint="name an input the engine takes",
        )
    if not lines_up(mask.shape, tuple(out_shape)):
        raise VerifySetupError(
            f"input '{input_name}' {list(mask.shape)} does not line up with output '{output}' {list(out_shape)}",
            where=where,
            module=module,
            hint="name an input whose shape is the output's leading dims (e.g. [batch, seq] for [batch, seq, vocab])",
        )
    real = np.asarray(mask) != 0
    real = real.reshape(real.shape + (1,) * (len(out_shape) - real.ndim))
    return np.broadcast_to(real, tuple(out_shape))


def outside(a: np.ndarray, r: np.ndarray, tol: dict) -> np.ndarray:
    """True where an element is outside atol + rtol * |ref| (NaN/Inf included)."""
    a, r = np.asarray(a, np.float64), np.asarray(r, np.float64)
    with np.errstate(invalid="ignore"):
        return ~(np.abs(a - r) <= tol["atol"] + tol["rtol"] * np.abs(r))


def zero_input_hint(output: str, failing: np.ndarray, inputs: dict, setting: str | None = None) -> str | None:
    """When every failing element lies where some 0/1 input is 0 (padding), say so and name the
    setting that leaves those positions out (`setting`: a module's verify.outputs.NAME.valid
    unless told)."""
    setting = setting or f"verify.outputs.{output}.valid"
    if not failing.any():
        return None
    for name, x in sorted(inputs.items()):
        x = np.asarray(x)
        if x.dtype.kind not in "biu" or not x.size or not lines_up(x.shape, failing.shape):
            continue
        if not np.isin(x, (0, 1)).all() or x.all() or not x.any():  # a mask holds both
            continue
        zero = ~keep_mask(output, failing.shape, {name: x}, name)
        if not (failing & ~zero).any():
            n = int(failing.sum())
            return (
                f"all {n} elements outside tolerance lie where input '{name}' is 0; if the outputs "
                f'there are not used (padding), set {setting} = "{name}"'
            )
    return None


def rows_identical(x: np.ndarray, keep: np.ndarray | None = None) -> bool:
    """Every compared row (axis -2) of every matrix equals that matrix's first compared row, and
    some matrix has at least 2 compared rows."""
    if x.ndim < 2 or x.shape[-2] < 2 or x.shape[-1] < 2:
        return False
    mats = x.reshape(-1, x.shape[-2], x.shape[-1])
    if keep is None:
        return bool((mats == mats[:, :1]).all())
    rows_kept = np.asarray(np.asarray(keep).reshape(mats.shape).all(axis=-1))
    seen = False
    for mat, kept in zip(mats, rows_kept):
        rows = mat[kept]
        if len(rows) < 2:
            continue
        seen = True
        if not (rows == rows[:1]).all():
            return False
    return seen


def _varies(inputs: dict) -> bool:
    return any(np.asarray(x).size > 1 and not (np.asarray(x) == np.asarray(x).flat[0]).all() for x in inputs.values())


def _replicated(inputs: dict) -> bool:
    """Some varying input repeats itself along an axis (a [1, 16] example file tiled to a batch of
    2): outputs whose rows repeat then do so by design."""
    for x in map(np.asarray, inputs.values()):
        if x.size < 2 or (x == x.flat[0]).all():
            continue
        for axis, n in enumerate(x.shape):
            if n >= 2 and (np.take(x, [0], axis=axis) == x).all():
                return True
    return False


def reference_problem(
    ref: np.ndarray, keep: np.ndarray | None, inputs: dict, constant_ok: bool, *, product: bool = False
) -> str | None:
    """Why this reference output cannot be compared against (module docstring), or None.
    product: the output is what a pipeline hands its user (images, generated tokens), so integer
    outputs are judged too, an empty one is broken, and so is an image (4-D) of one colour or a
    batch of identical items."""
    ref = np.asarray(ref)
    floating = ref.dtype.kind == "f"
    if not (floating or product):
        return None
    values = ref[keep] if keep is not None else ref.ravel()
    if product and values.size == 0:
        return f"it is empty ({list(ref.shape)})"
    bad = int((~np.isfinite(values)).sum()) if floating else 0
    if bad:
        return f"{bad} of {values.size} values are NaN/Inf"
    if constant_ok or not _varies(inputs):
        return None
    if values.size >= 2 and np.ptp(values) == 0:
        return f"every one of its {values.size} values is {float(values[0]):g} although the inputs vary"
    if product and ref.ndim == 4:  # images, (N, C, H, W) or (N, H, W, C): each one must show something
        for i, img in enumerate(ref):
            shown = img[keep[i]] if keep is not None else img.ravel()
            if shown.size >= 2 and np.ptp(shown) == 0:
                return f"image {i} is a single colour ({float(shown[0]):g}: all black?)"
    if _replicated(inputs):
        return None
    if rows_identical(ref, keep):
        return f"all {ref.shape[-2]} rows of its {list(ref.shape)} are identical although the inputs vary"
    if product and ref.ndim > 2 and rows_identical(ref.reshape(ref.shape[0], -1), _items(keep)):
        return f"its {ref.shape[0]} items (axis 0) are identical although the inputs vary"
    return None


def _items(keep: np.ndarray | None) -> np.ndarray | None:
    return None if keep is None else np.asarray(keep).reshape(keep.shape[0], -1)


def check_references(sets: list, tolerance, module: str, drawn: dict | None = None) -> None:
    """Before any comparison: every `valid` input lines up with its output, and no FP32 reference
    output is broken (VerifySetupError naming the module, output and input set). sets: (label,
    inputs, reference); drawn: {set label: {input: source}} of inputs drawn at random (named in
    the error: a random attention mask can leave a row with nothing to attend to)."""
    for label, inputs, ref in sets:
        for name, r in ref.items():
            tol = tolerance(name)
            keep = keep_mask(name, r.shape, inputs, tol["valid"], module) if tol.get("valid") else None
            problem = reference_problem(r, keep, inputs, bool(tol.get("constant_ok")))
            if problem is None:
                continue
            fix = (
                f"if '{name}' is constant by design, set verify.outputs.{name}.constant_ok = true"
                if "NaN" not in problem
                else "the FP32 PyTorch module gives them on these inputs: fix the model or its example inputs"
            )
            random = (drawn or {}).get(label)
            if random:
                names = ", ".join(f"{n} ({src})" for n, src in sorted(random.items()))
                fix += f"; inputs random in this set: {names}: give real data with file= or value="
            raise VerifySetupError(
                f"the FP32 reference is broken: {problem}; nothing was compared against it",
                where=f"output '{name}', input set '{label}'",
                module=module,
                hint=fix,
            )


def keep_for(name: str, shape: tuple, tol: dict, inputs: dict | None) -> np.ndarray | None:
    if not tol.get("valid"):
        return None
    invariant(inputs is not None, f"output '{name}' has valid = '{tol['valid']}' but no inputs were given")
    return keep_mask(name, shape, inputs or {}, tol["valid"])
