"""Dynamic dimensions: named dims in input shapes, their ranges, and optimization profiles.

    inputs.image = { shape = ["batch", 3, "height", "width"] }
    dims.batch = { min = 1, opt = 4, max = 8 }            # one profile
    profiles = [{ batch = { min = 1, opt = 1, max = 1 } },  # or several; each names every dim
                { batch = { min = 2, opt = 4, max = 8 } }]

A profile is a tuple of (dim, (min, opt, max)) pairs in dim-name order (frozen, hashable, one
canonical form per meaning). Static shapes (no named dim) have no profile at all, and their cache
keys do not mention profiles. Plain Python only: the no-op build imports this module.
"""

from __future__ import annotations

import random
import re

from trtforge.errors import ManifestError

POINTS = ("min", "opt", "max")
_DIM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Profile = tuple  # ((dim, (min, opt, max)), ...)


def check_dim_name(value: str, where: str) -> str:
    if not _DIM_NAME.match(value):
        raise ManifestError(
            f"dimension name '{value}' must be an identifier (letters, digits, '_')",
            where=where,
            hint='write e.g. shape = ["batch", 3, 224, 224]',
        )
    return value


def named_dims(inputs) -> dict[str, str]:
    """dim name -> where it first appears (`inputs.x.shape[0]`), in manifest order."""
    out: dict[str, str] = {}
    for spec in inputs:
        for i, d in enumerate(spec.shape):
            if isinstance(d, str):
                out.setdefault(d, f"inputs.{spec.name}.shape[{i}]")
    return out


def _range(raw, where: str) -> tuple[int, int, int, int]:
    """(min, opt, max, multiple_of) from {min, opt, max[, multiple_of]}: positive integers with
    min <= opt <= max, each a multiple of multiple_of (default 1: a model that computes with the
    dim, e.g. a UNet halving it, may need it even); an integer n means n, n, n."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = {"min": raw, "opt": raw, "max": raw}
    if not isinstance(raw, dict):
        raise ManifestError(f"expected {{ min = .., opt = .., max = .. }}, got {raw!r}", where=where)
    for key in raw:
        if key not in (*POINTS, "multiple_of"):
            raise ManifestError(
                f"unknown key '{key}'",
                where=f"{where}.{key}",
                hint="the keys are min, opt, max and optionally multiple_of",
            )
    step = raw.get("multiple_of", 1)
    if isinstance(step, bool) or not isinstance(step, int) or step <= 0:
        raise ManifestError(f"must be a positive integer, got {step!r}", where=f"{where}.multiple_of")
    for key in POINTS:
        v = raw.get(key)
        if v is None:
            raise ManifestError(f"missing '{key}'", where=f"{where}.{key}", hint="write { min = 1, opt = 4, max = 8 }")
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ManifestError(f"must be a positive integer, got {v!r}", where=f"{where}.{key}")
    lo, opt, hi = (raw[k] for k in POINTS)
    if lo > opt:
        raise ManifestError(f"min {lo} is above opt {opt}", where=where, hint="need min <= opt <= max")
    if opt > hi:
        raise ManifestError(f"opt {opt} is above max {hi}", where=where, hint="need min <= opt <= max")
    for key in POINTS:
        if raw[key] % step:
            raise ManifestError(f"{key} {raw[key]} is not a multiple of multiple_of {step}", where=f"{where}.{key}")
    return lo, opt, hi, step


def _ranges(raw, where: str, names: dict[str, str], *, table: str) -> Profile:
    if not isinstance(raw, dict):
        raise ManifestError(f"expected a table dim -> {{ min, opt, max }}, got {raw!r}", where=where)
    for dim in raw:
        if dim not in names:
            known = ", ".join(names) or "none"
            raise ManifestError(
                f"dimension '{dim}' is named in no input's shape (named dims: {known})",
                where=f"{where}.{dim}",
                hint=f'use it in a shape, e.g. shape = ["{dim}", ...], or remove it',
            )
    for dim, first in names.items():
        if dim not in raw:
            raise ManifestError(
                f"dimension '{dim}' ({first}) has no range in {table}",
                where=f"{where}.{dim}",
                hint=f"add {table}.{dim} = {{ min = 1, opt = 4, max = 8 }}"
                if table == "dims"
                else f"give every profile a range for '{dim}'",
            )
    return tuple((dim, _range(raw[dim], f"{where}.{dim}")) for dim in sorted(raw))


def _same_multiples(profiles: tuple[Profile, ...], where: str) -> None:
    """multiple_of is a property of the dimension (the export declares it once): one per dim."""
    seen: dict[str, int] = {}
    for i, p in enumerate(profiles):
        for dim, r in p:
            if seen.setdefault(dim, r[3]) != r[3]:
                raise ManifestError(
                    f"dimension '{dim}' has multiple_of {r[3]} here and {seen[dim]} in an earlier profile",
                    where=f"{where}.profiles[{i}].{dim}.multiple_of",
                    hint="give every profile the same multiple_of for a dimension",
                )


def parse_profiles(raw_module: dict, inputs, where: str) -> tuple[Profile, ...]:
    """The module's profiles from `dims` (one profile) or `profiles` (several); () when static."""
    names = named_dims(inputs)
    has_dims, has_profiles = "dims" in raw_module, "profiles" in raw_module
    if has_dims and has_profiles:
        raise ManifestError(
            "both 'dims' and 'profiles' are set",
            where=f"{where}.profiles",
            hint="use dims.X for one profile, or profiles = [...] (every dim in each) for several",
        )
    if has_dims:
        return (_ranges(raw_module["dims"], f"{where}.dims", names, table="dims"),)
    if has_profiles:
        raw = raw_module["profiles"]
        if not isinstance(raw, list) or not raw:
            raise ManifestError(
                f"expected a non-empty list of tables dim -> {{ min, opt, max }}, got {raw!r}",
                where=f"{where}.profiles",
            )
        profiles = tuple(_ranges(p, f"{where}.profiles[{i}]", names, table=f"profiles[{i}]") for i, p in enumerate(raw))
        _same_multiples(profiles, where)
        return profiles
    if names:
        dim, first = next(iter(names.items()))
        raise ManifestError(
            f"dimension '{dim}' has no range",
            where=f"{where}.{first}",
            hint=f"add dims.{dim} = {{ min = 1, opt = 4, max = 8 }} to the module",
        )
    return ()


def check_static_preprocess(passes, inputs, where: str) -> None:
    """bake_preprocess makes the engine take the caller's uint8 image at one size: its input must
    be static (refused here, before any input set is made)."""
    shapes = {s.name: s.shape for s in inputs}
    for i, step in enumerate(passes):
        shape = shapes.get(step.get("input")) if step.get("name") == "bake_preprocess" else None
        if shape and any(isinstance(d, str) for d in shape):
            raise ManifestError(
                f"bake_preprocess needs a static shape; input '{step['input']}' has dynamic "
                f"dims {[d for d in shape if isinstance(d, str)]}",
                where=f"{where}[{i}]",
                hint="give that input a static shape, or preprocess outside the engine",
            )


def profiles_key(profiles: tuple[Profile, ...]) -> list:
    return [{dim: dict(zip((*POINTS, "multiple_of"), r)) for dim, r in p} for p in profiles]


def multiples(profiles: tuple[Profile, ...]) -> dict[str, int]:
    return {dim: r[3] for p in profiles for dim, r in p}


def concrete(shape, values: dict[str, int]) -> tuple[int, ...]:
    return tuple(values[d] if isinstance(d, str) else d for d in shape)


def input_shapes(inputs, values: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """Concrete shapes of every input at these dim values (tensors.make_inputs' `shapes`)."""
    return {s.name: concrete(s.shape, values) for s in inputs}


def point_values(profile: Profile, point: str) -> dict[str, int]:
    k = POINTS.index(point)
    return {dim: r[k] for dim, r in profile}


def point_label(index: int, point: str) -> str:
    """The set label and file tag of a profile point: 'p0.min' (inputs.p0.min.npz)."""
    return f"p{index}.{point}"


def profile_points(profiles: tuple[Profile, ...]) -> list[tuple[str, dict[str, int]]]:
    """(label, dim values) for min, opt, max of every profile, in order."""
    return [(point_label(i, pt), point_values(p, pt)) for i, p in enumerate(profiles) for pt in POINTS]


def random_points(profiles: tuple[Profile, ...], n: int, seed: int | str) -> list[tuple[str, dict[str, int]]]:
    """(label, dim values) of `n` seeded shapes inside each profile (`verify.shapes`): each dim
    drawn in [min, max] on its multiple_of grid, none at the profile's min, opt or max and no two
    alike (fewer where the profile holds fewer other shapes; none for a fixed profile). Labels
    'p0.shape1', ... Plain `random` seeded with a string: the same on every machine and run."""
    out = []
    for i, p in enumerate(profiles):
        rng = random.Random(f"{seed}/p{i}")
        grids = [(dim, range(lo, hi + 1, step)) for dim, (lo, _, hi, step) in p]
        total = 1
        for _, grid in grids:
            total *= len(grid)
        seen = {tuple(point_values(p, pt).items()) for pt in POINTS}
        k = 0
        for _ in range(50 * n):
            if k == n or len(seen) >= total:
                break
            values = tuple((dim, rng.choice(grid)) for dim, grid in grids)
            if values not in seen:
                seen.add(values)
                k += 1
                out.append((f"p{i}.shape{k}", dict(values)))
    return out


def union_ranges(profiles: tuple[Profile, ...]) -> dict[str, tuple[int, int]]:
    """dim -> (lowest min, highest max) over every profile: the range the export must allow."""
    out: dict[str, tuple[int, int]] = {}
    for p in profiles:
        for dim, (lo, _, hi, _) in p:
            a, b = out.get(dim, (lo, hi))
            out[dim] = (min(a, lo), max(b, hi))
    return out


def example_values(profiles: tuple[Profile, ...]) -> dict[str, int]:
    """The dims of the example set, which the export traces with: the opt point of the first profile
    whose opt avoids sizes 0 and 1 on dims that vary (torch specialises a size-1 example dim), else
    profile 0's opt."""
    ranges = union_ranges(profiles)
    for p in profiles:
        opt = point_values(p, "opt")
        if all(v >= 2 or ranges[d][0] == ranges[d][1] for d, v in opt.items()):
            return opt
    return point_values(profiles[0], "opt")


def max_values(profiles: tuple[Profile, ...]) -> dict[str, int]:
    return {d: hi for d, (_, hi) in union_ranges(profiles).items()}


def describe(profiles: tuple[Profile, ...], inputs) -> list[dict]:
    """Per profile, input -> {min, opt, max} concrete shapes (inputs with a named dim only): what
    the build gives TensorRT and what the sidecar and report list."""
    out = []
    for p in profiles:
        shapes = {}
        for spec in inputs:
            if any(isinstance(d, str) for d in spec.shape):
                shapes[spec.name] = {pt: list(concrete(spec.shape, point_values(p, pt))) for pt in POINTS}
        out.append(shapes)
    return out


def profile_lines(profiles: list[dict]) -> list[str]:
    """One line per profile for reports: 'p0: image [1, 3, 32, 32] / [4, ...] / [8, ...] (min/opt/max)'."""
    return [
        f"p{i}: "
        + "; ".join(f"{name} {pts['min']} / {pts['opt']} / {pts['max']}" for name, pts in shapes.items())
        + " (min / opt / max)"
        for i, shapes in enumerate(profiles)
    ]
