"""Random TOML values of the wrong type or out of range in every manifest field: the loader
answers each with one ManifestError line naming the field, never another exception. In-process
against the loader for speed, plus a handful through the console script (exit 2, one line)."""

from __future__ import annotations

import datetime
import json
import math
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli
from tests.errors.conftest import one_error_line
from trtforge.errors import ManifestError
from trtforge.manifest import BACKENDS, DTYPES, EXPORTERS, PASS_CHECKS, RTX_CCS, TASK, parse_manifest
from trtforge.manifest.limits import MAX_RANDOM_INPUTS, MAX_WORKSPACE_MIB, exporter_opsets

# ------------------------------------------------------------------------------ TOML values

_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
_scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), _text, st.dates()
)
_keys = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
ANY = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=3), max_leaves=8
)


def toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, (int, datetime.date)):
        return str(v) if isinstance(v, int) else v.isoformat()
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml(x) for x in v) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {toml(x)}" for k, x in v.items()) + " }"


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def wrong(accepts) -> st.SearchStrategy:
    return ANY.filter(lambda v: not accepts(v))


def outside(lo: int, hi: int) -> st.SearchStrategy:
    return st.integers(-(2**63), lo - 1) | st.integers(hi + 1, 2**63 - 1)


def not_in(choices) -> st.SearchStrategy:
    return _text.filter(lambda s: s not in choices)


_bad_number = st.sampled_from([math.nan, math.inf, -math.inf])
_negative = st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False)
_not_fraction = _negative | st.floats(min_value=1.000001, allow_nan=False) | _bad_number
_bad_step = st.lists(ANY.filter(lambda v: not isinstance(v, (str, dict))), min_size=1, max_size=3)
_opset_lo, _opset_hi = exporter_opsets()["dynamo"]

# field -> strategy of values that field must refuse; where each field is written (and named)
FIELDS = {
    "factory": wrong(lambda v: isinstance(v, str))
    | _text.filter(lambda s: not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", s)),
    "factory_args": wrong(lambda v: isinstance(v, dict)),
    "inputs.x": wrong(lambda v: isinstance(v, dict)),
    "inputs.x.shape": wrong(lambda v: isinstance(v, list))
    | st.just([])
    | st.lists(st.integers(-(2**63), 0), min_size=1, max_size=4)
    | st.lists(st.integers(2**20, 2**63 - 1), min_size=2, max_size=4)
    | st.lists(st.integers(1, 2), min_size=9, max_size=12)
    | st.lists(wrong(is_int), min_size=1, max_size=3),
    "inputs.x.dtype": wrong(lambda v: isinstance(v, str)) | not_in(DTYPES),
    "inputs.x.range": wrong(lambda v: isinstance(v, list))
    | st.lists(st.floats(-1, 1), max_size=1)
    | st.tuples(_bad_number, st.floats(-1, 1)).map(list)
    | st.tuples(st.floats(-1, 1), _bad_number).map(list)
    | st.tuples(st.floats(0, 1), st.floats(-1, 0)).map(list)
    | st.tuples(st.floats(-1e30, -7e4), st.floats(7e4, 1e30)).map(list),
    "outputs": wrong(lambda v: isinstance(v, list))
    | st.just([""])
    | st.just(["y", "y"])
    | st.lists(wrong(lambda v: isinstance(v, str)), min_size=1, max_size=3),
    "depends": wrong(lambda v: isinstance(v, list)) | st.sampled_from([[""], ["/etc/hostname"], ["  "]]),
    "export.exporter": wrong(lambda v: isinstance(v, str)) | not_in(EXPORTERS),
    "export.opset": wrong(is_int) | outside(_opset_lo, _opset_hi),
    "export.forbid_fp32_islands": wrong(lambda v: isinstance(v, bool)),
    "passes": wrong(lambda v: isinstance(v, list)) | _bad_step,
    "precision.rules": wrong(lambda v: isinstance(v, list)) | _bad_step,
    "precision.realizer": wrong(lambda v: isinstance(v, str)) | not_in(("casts", "layer_precision", "auto")),
    "build.backend": wrong(lambda v: isinstance(v, str)) | not_in(BACKENDS),
    "build.optimization_level": wrong(is_int) | outside(0, 5),
    "build.workspace_mib": wrong(is_int) | outside(1, MAX_WORKSPACE_MIB),
    "build.rtx_compute_capabilities": wrong(lambda v: isinstance(v, list))
    | st.lists(not_in(RTX_CCS), min_size=1, max_size=2),
    "verify.atol": wrong(is_num) | _negative | _bad_number,
    "verify.rtol": wrong(is_num) | _negative | _bad_number,
    "verify.max_outside": wrong(is_num) | _not_fraction,
    "verify.min_cosine": wrong(is_num) | _not_fraction,
    "verify.random_inputs": wrong(is_int) | outside(0, MAX_RANDOM_INPUTS),
    "verify.seed": wrong(is_int),
    "verify.outputs.y.metric": wrong(lambda v: isinstance(v, str)) | not_in(tuple(TASK)),
    "verify.outputs.y.atol": wrong(is_num) | _negative | _bad_number,
    "pass_check": wrong(lambda v: isinstance(v, str)) | not_in(PASS_CHECKS),
    "defaults.cache_dir": wrong(lambda v: isinstance(v, str)) | st.sampled_from(["", "  "]),
    "defaults.output_dir": wrong(lambda v: isinstance(v, str)),
}


def manifest(field: str, value) -> tuple[str, str]:
    """(TOML text, the dotted name the error must carry) with `value` at `field`."""
    doc = {"factory": "bad_models:make_tiny", "inputs": {"x": {"shape": [1, 3, 8, 8]}}, "outputs": ["y"]}
    defaults = {}
    target, path = (defaults, field.split(".")[1:]) if field.startswith("defaults.") else (doc, field.split("."))
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = value
    lines = [
        "[defaults]",
        *(f"{json.dumps(k)} = {toml(v)}" for k, v in defaults.items()),
        "",
        "[modules.m]",
        *(f"{json.dumps(k)} = {toml(v)}" for k, v in doc.items()),
    ]
    named = field if field.startswith("defaults.") else f"modules.m.{field}"
    return "\n".join(lines) + "\n", named


@st.composite
def bad_manifests(draw):
    field = draw(st.sampled_from(sorted(FIELDS)))
    return (field, *manifest(field, draw(FIELDS[field])))


@settings(max_examples=600, deadline=None)
@given(bad_manifests())
def test_every_field_refuses_wrong_values_in_one_line(case):
    field, text, named = case
    event(field)  # `pytest --hypothesis-show-statistics` shows every field was drawn
    with pytest.raises(ManifestError) as e:
        parse_manifest(text, Path("/nonexistent/engines.toml"))
    line = e.value.one_line()
    assert "\n" not in line
    assert named in line, (field, line)


@pytest.mark.slow  # the console script
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad_manifests())
def test_through_the_console_script(project, case):
    field, text, named = case
    (project / "property.toml").write_text(text)
    r = run_cli("build", "--quiet", "property.toml", cwd=project)
    line = one_error_line(r, 2, named)
    assert line.startswith("trtforge: error: manifest: property.toml: ")
