"""Keys, by property: every single ingredient changes its stage's key (and no other stage's);
manifests that mean the same thing give the same keys; keys do not depend on the process."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cache.conftest import MLP
from tests.conftest import STAGES
from trtforge.cache import Record, key_of
from trtforge.cache.keys import canonical_json, set_memo_root
from trtforge.driver.execute import stage_key
from trtforge.driver.stages import stage_table
from trtforge.manifest import DEFAULT_PASSES, parse_manifest

REPO = Path(__file__).resolve().parents[2]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# The fields of one module, their value strategies, and the stage(s) whose key each belongs to.
FIELDS = {
    "factory_args.width": (st.integers(1, 64), "export"),
    "factory_args.seed": (st.integers(0, 9), "export"),
    "inputs.x.shape": (st.lists(st.integers(1, 8), min_size=1, max_size=3), "export"),
    "inputs.x.dtype": (st.sampled_from(["float16", "float32"]), "export"),
    "inputs.x.range": (st.sampled_from([[-1.0, 1.0], [0.0, 1.0], [-2.0, 3.0]]), "export"),
    "outputs": (st.sampled_from([["y"], ["out"], ["y", "z"]]), "export"),
    "export.opset": (st.integers(17, 21), "export"),
    "export.forbid_fp32_islands": (st.booleans(), "export"),
    "passes": (st.sampled_from([["fold_constants"], ["cleanup", "toposort"], ["toposort"]]), "graph_passes"),
    "precision.rules": (st.sampled_from([[], ["attention_score"]]), "precision_rules"),
    "build.optimization_level": (st.integers(0, 5), "build"),
    "build.workspace_mib": (st.integers(1, 8192), "build"),
    "build.rtx_compute_capabilities": (st.sampled_from([[], ["8.6"], ["8.0", "8.9"], ["12.0"]]), "build"),
    "verify.atol": (st.floats(0, 1, allow_nan=False), "verify"),
    "verify.rtol": (st.floats(0, 1, allow_nan=False), "verify"),
    "verify.min_cosine": (st.floats(0, 1, allow_nan=False), "verify"),
    # the seed also makes the example inputs, in export
    "verify.seed": (st.integers(0, 100), ("export", "verify")),
}


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        items = [
            f"{{ rule = {json.dumps(v)} }}" if isinstance(v, str) and v == "attention_score" else _toml(v)
            for v in value
        ]
        return "[" + ", ".join(items) + "]"
    return repr(value)


def render(values: dict) -> str:
    """A manifest with one table line per dotted field (TOML merges dotted keys into tables)."""
    lines = ["[modules.mlp]", 'factory = "tinymods.mlp:make_mlp"']
    for name, value in values.items():
        if name == "passes":
            lines.append("passes = [" + ", ".join(f"{{ name = {json.dumps(p)} }}" for p in value) + "]")
        else:
            lines.append(f"{name} = {_toml(value)}")
    return "\n".join(lines) + "\n"


BASE = {"factory_args.width": 16, "inputs.x.shape": [2, 8], "outputs": ["y"]}

UPSTREAM = {
    name: Record(key=name, stage=name, outputs={"model.onnx": {"digest": name[0] * 64, "size": 1}}, meta={})
    for name in STAGES[:-1]
}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("keys")
    (root / "tinymods").mkdir()
    (root / "tinymods" / "__init__.py").write_text("")
    (root / "tinymods" / "mlp.py").write_text(MLP)
    (root / "weights.bin").write_bytes(b"w" * 100)
    set_memo_root(tmp_path_factory.mktemp("memo"))  # the backend libraries are hashed once
    return root


def keys_of(text: str, root: Path) -> dict:
    (module,) = parse_manifest(text, root / "engines.toml").modules
    out = {}
    for stage, deps in stage_table():
        out[stage.name] = stage_key(stage, module, root, {d: UPSTREAM[d] for d in deps})[0]
    return out


@SETTINGS
@given(field=st.sampled_from(sorted(FIELDS)), data=st.data())
def test_changing_one_manifest_field_changes_its_stage_key_only(root, field, data):
    strategy, owners = FIELDS[field]
    owners = (owners,) if isinstance(owners, str) else owners
    old = data.draw(strategy, label="old")
    new = data.draw(strategy.filter(lambda v: v != old), label="new")
    a = keys_of(render({**BASE, field: old}), root)
    b = keys_of(render({**BASE, field: new}), root)
    for owner in owners:
        assert a[owner] != b[owner], f"{field}: {old!r} -> {new!r} did not change the {owner} key"
    assert {s: k for s, k in a.items() if s not in owners} == {s: k for s, k in b.items() if s not in owners}


@SETTINGS
@given(stage_index=st.integers(1, 4), which=st.integers(0, 3), byte=st.sampled_from("0123456789abcdef"))
def test_changing_an_input_digest_changes_the_key(root, stage_index, which, byte):
    (module,) = parse_manifest(render(BASE), root / "engines.toml").modules
    stage, deps = stage_table()[stage_index]
    upstream = {d: UPSTREAM[d] for d in deps}
    dep = deps[which % len(deps)]
    digest = upstream[dep].outputs["model.onnx"]["digest"]
    changed = byte + digest[1:] if byte != digest[0] else "f" + digest[1:] if digest[0] != "f" else "e" + digest[1:]
    upstream2 = {
        **upstream,
        dep: dataclasses.replace(upstream[dep], outputs={"model.onnx": {"digest": changed, "size": 1}}),
    }
    assert stage_key(stage, module, root, upstream)[0] != stage_key(stage, module, root, upstream2)[0]


def test_stage_salt_source_depends_and_tools_change_keys(root, monkeypatch):
    text = render(BASE)
    base = keys_of(text, root)
    (module,) = parse_manifest(text, root / "engines.toml").modules
    for stage, deps in stage_table():  # the per-stage version salt
        up = {d: UPSTREAM[d] for d in deps}
        assert stage_key(dataclasses.replace(stage, version="x"), module, root, up)[0] != base[stage.name]
    # a factory source file
    src = root / "tinymods" / "mlp.py"
    src.write_text(MLP + "# edited\n")
    try:
        assert keys_of(text, root)["export"] != base["export"]
    finally:
        src.write_text(MLP)
    assert keys_of(text, root) == base
    # a weight file named in depends: content, not name, decides
    with_dep = keys_of(text + 'depends = ["weights.bin"]\n', root)
    (root / "weights.bin").write_bytes(b"v" * 100)
    assert keys_of(text + 'depends = ["weights.bin"]\n', root)["export"] != with_dep["export"]
    # every tool version and build fact the stages read
    import trtforge.builder as build_pkg
    import trtforge.export as export_pkg
    import trtforge.graph_passes as passes_pkg
    import trtforge.precision_rules as prec_pkg
    import trtforge.verify as verify_pkg
    from trtforge import backends as be

    for pkg, owner in (
        (export_pkg, "export"),
        (passes_pkg, "graph_passes"),
        (prec_pkg, "precision_rules"),
        (build_pkg, "build"),
        (verify_pkg, "verify"),
    ):
        real = pkg.tool_versions
        with monkeypatch.context() as m:
            m.setattr(pkg, "tool_versions", lambda *d, real=real: {**real(*d), d[0]: "9.9.9-other"})
            assert keys_of(text, root)[owner] != base[owner], f"{owner}: tool version not in the key"
    for name, fake in (
        ("version", lambda b: "0.0-other"),
        ("platform_key", lambda: {"os": "Windows"}),
        ("library_files", lambda b: [src]),
        ("target", lambda b, c: {"name": "rtx-sm75", "compute_capabilities": ["7.5"]}),
        ("gpus", lambda: [be.Gpu("NVIDIA L4", "8.9")]),
    ):
        with monkeypatch.context() as m:
            m.setattr(be, name, fake)
            changed = keys_of(text, root)
            owner = "verify" if name == "gpus" else "build"
            assert changed[owner] != base[owner], f"{name} is not in the {owner} key"


# ------------------------------------------------------------------------------ equivalence
DEFAULTS = {
    "inputs.x.dtype": "float16",
    "inputs.x.range": [-1.0, 1.0],
    "export.opset": 20,
    "export.exporter": "dynamo",
    "build.backend": "auto",
    "build.optimization_level": 3,
    "build.workspace_mib": 4096,
    "verify.atol": 0.01,
    "verify.rtol": 0.01,
    "verify.max_outside": 0.001,
    "verify.min_cosine": 0.999,
    "verify.seed": 0,
    "precision.realizer": "auto",
    "passes": [p["name"] for p in DEFAULT_PASSES],
}


@SETTINGS
@given(
    spelled=st.sets(st.sampled_from(sorted(DEFAULTS))),
    order=st.randoms(use_true_random=False),
    as_defaults=st.booleans(),
)
def test_equivalent_manifests_give_equal_keys(root, spelled, order, as_defaults):
    plain = render(BASE)
    values = {**BASE, **{k: DEFAULTS[k] for k in spelled}}
    items = list(values.items())
    order.shuffle(items)
    text = render(dict(items))
    if as_defaults:  # a [defaults] table that spells out a default means the same as saying nothing
        text = "[defaults]\nbuild = { optimization_level = 3, workspace_mib = 4096 }\n" + text
    text = text.replace("verify.atol = 0.01", "verify.atol = 1e-2")
    assert keys_of(text, root) == keys_of(plain, root)
    (a,), (b,) = (parse_manifest(t, root / "engines.toml").modules for t in (text, plain))
    assert canonical_json(a.as_key()) == canonical_json(b.as_key())


# ------------------------------------------------------------------------------ processes
_SCRIPT = """
import json, sys
from pathlib import Path
from trtforge.cache import Record, key_of
from trtforge.manifest import DEFAULT_PASSES, parse_manifest
from trtforge.driver.execute import stage_key
from trtforge.driver.stages import stage_table
root = Path(sys.argv[1])
(module,) = parse_manifest((root / "engines.toml").read_text(), root / "engines.toml").modules
up = {n: Record(key=n, stage=n, outputs={"model.onnx": {"digest": n[0] * 64, "size": 1}}, meta={})
      for n in {d for _, deps in stage_table() for d in deps}}
keys = {s.name: stage_key(s, module, root, {d: up[d] for d in deps})[0] for s, deps in stage_table()}
keys["set"] = key_of({"s": frozenset(["alpha", "beta", "gamma", "delta"]), "d": {"b": 1, "a": 2}})
print(json.dumps(keys))
"""


def test_keys_are_stable_across_processes(root):
    (root / "engines.toml").write_text(render({**BASE, "factory_args.seed": 3, "passes": ["toposort", "cleanup"]}))
    outs = []
    for seed in ("0", "4242"):
        env = {
            **os.environ,
            "PYTHONHASHSEED": seed,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        proc = subprocess.run(
            [sys.executable, "-c", _SCRIPT, str(root)], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(json.loads(proc.stdout))
    assert outs[0] == outs[1]
    assert {k: v for k, v in outs[0].items() if k != "set"} == keys_of((root / "engines.toml").read_text(), root)


LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)


@SETTINGS
@given(doc=st.dictionaries(st.text(max_size=4), LEAF, min_size=1, max_size=5), data=st.data())
def test_key_of_changes_with_any_single_value(doc, data):
    name = data.draw(st.sampled_from(sorted(doc)))
    new = data.draw(LEAF.filter(lambda v: canonical_json(v) != canonical_json(doc[name])))
    assert key_of(doc) != key_of({**doc, name: new})
    assert key_of(doc) == key_of(dict(reversed(list(doc.items()))))  # insertion order is irrelevant


def test_key_of_tells_types_apart():
    assert len({key_of({"v": v}) for v in (1, 1.0, "1", True, [1], None)}) == 6
