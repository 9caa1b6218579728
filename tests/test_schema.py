"""The JSON Schema of engines.toml (trtforge/schema/engines.schema.json): generated from the
loader's section tables, so the shipped file and the loader cannot drift apart; it validates the
example manifest and refuses what the loader refuses."""

from __future__ import annotations

import copy

import jsonschema
import pytest
import tomllib

from tests.conftest import REPO
from trtforge import manifest as m
from trtforge.schema import SCHEMA_FILE, generate, text


def test_the_shipped_schema_is_the_one_the_loader_generates():
    assert SCHEMA_FILE.read_text() == text(), "run `python -m trtforge.schema` after changing the loader"


def test_every_loader_key_is_in_the_schema_with_its_default():
    schema = generate()
    defaults = schema["properties"]["defaults"]["properties"]
    module = schema["properties"]["modules"]["additionalProperties"]["properties"]
    assert set(module) == set(m.MODULE_KEYS) and set(defaults) == {*m.DEFAULT_KEYS, *m.TOP}
    for name, spec in (("export", m.EXPORT), ("build", m.BUILD), ("verify", m.VERIFY), ("precision", m.PRECISION)):
        props = defaults[name]["properties"]
        for key, (_, default) in spec.items():
            assert props[key]["default"] == (list(default) if isinstance(default, tuple) else default), (name, key)
    assert defaults["build"]["properties"]["optimization_level"]["maximum"] == 5


@pytest.fixture
def example():
    return tomllib.loads((REPO / "engines.toml").read_text())


def test_the_example_manifest_validates_and_names_the_schema(example):
    jsonschema.validate(example, generate())
    first = (REPO / "engines.toml").read_text().splitlines()[0]
    assert first.startswith("#:schema ") and (REPO / first.split(" ", 1)[1]).resolve() == SCHEMA_FILE


@pytest.mark.parametrize(
    "edit,fragment",
    [
        (lambda d: d["defaults"]["build"].update(optimization_level=9), "9 is greater than the maximum of 5"),
        (lambda d: d["modules"]["vit"].update(build={"rtx_compute_capabilities": ["9.0"]}), "'9.0' is not one of"),
        (lambda d: d["modules"]["vit"].update(factry="x:y"), "Additional properties are not allowed"),
        (lambda d: d["modules"]["vit"]["inputs"]["image"].update(dtype="fp16"), "'fp16' is not one of"),
        (lambda d: d["modules"]["vit"]["inputs"]["image"].pop("shape"), "'shape' is a required property"),
        (lambda d: d["pipelines"]["txt2img"].update(runnr="x:y"), "Additional properties are not allowed"),
        (lambda d: d["pipelines"]["greedy"]["outputs"]["tokens"].update(metric="bleu"), "'bleu' is not one of"),
        (lambda d: d["pipelines"]["greedy"].pop("runner"), "'runner' is a required property"),
    ],
)
def test_the_schema_refuses_what_the_loader_refuses(example, edit, fragment):
    doc = copy.deepcopy(example)
    edit(doc)
    with pytest.raises(jsonschema.ValidationError, match=fragment):
        jsonschema.validate(doc, generate())
