"""The manifest side of the pass system: pass_check is validated and defaulted, the default list
holds the shape-folding pass, user passes load as 'package.module:Class' with parameters."""

from pathlib import Path

import pytest

from trtforge.errors import ManifestError, PassError
from trtforge.graph_passes.catalog import BUILTIN, make_pass
from trtforge.manifest import DEFAULT_PASSES, parse_manifest

BASE = '[modules.m]\nfactory = "a.b:c"\ninputs.x = { shape = [1], dtype = "float16" }\n'


def test_pass_check_defaults_and_overrides():
    m = parse_manifest(BASE, Path("engines.toml")).modules[0]
    assert m.pass_check == "each" and m.as_key()["pass_check"] == "each"
    m = parse_manifest(
        '[defaults]\npass_check = "off"\n' + BASE + 'pass_check = "pipeline"\n', Path("engines.toml")
    ).modules[0]
    assert m.pass_check == "pipeline"


def test_bad_pass_check_names_the_field():
    with pytest.raises(ManifestError, match=r"modules.m.pass_check.*'sometimes'"):
        parse_manifest(BASE + 'pass_check = "sometimes"\n', Path("engines.toml"))


def test_default_list_folds_static_shapes_and_every_name_is_built_in():
    names = [s["name"] for s in DEFAULT_PASSES]
    assert "fold_static_shapes" in names and set(names) <= set(BUILTIN)
    for name in BUILTIN:
        module, cls = BUILTIN[name].split(":")
        assert getattr(__import__(module, fromlist=[cls]), cls).name == name


def test_user_pass_with_parameters(tmp_path):
    (tmp_path / "mypasses.py").write_text(
        "from trtforge.graph_passes.base import GraphPass\n"
        "class Nothing(GraphPass):\n    name = 'nothing'\n"
        "    def __init__(self, level=0):\n        self.level = level\n"
        "    def apply(self, graph, ctx):\n        return False\n"
    )
    p = make_pass({"name": "mypasses:Nothing", "level": 3}, "w", tmp_path)
    assert p.params() == {"level": 3}
    with pytest.raises(PassError, match="bad parameters"):
        make_pass({"name": "mypasses:Nothing", "bogus": 1}, "w", tmp_path)
    with pytest.raises(PassError, match="unknown pass 'fold_everything'"):
        make_pass({"name": "fold_everything"}, "w", tmp_path)
