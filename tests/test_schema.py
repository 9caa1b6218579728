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


# ---------------------------------------------------------------- every table, every snippet (issue 29)


def toml_snippets() -> list[tuple[str, str]]:
    """(where, text) of every ```toml block in README.md and docs/*.md."""
    import re

    out = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for i, block in enumerate(re.findall(r"```toml\n(.*?)```", path.read_text(), re.S)):
            out.append((f"{path.relative_to(REPO)} block {i}", block))
    return out


def example_manifests() -> list:
    return sorted(p for p in REPO.rglob("*.toml") if ".venv" not in p.parts and p.name != "pyproject.toml")


def test_the_schema_has_every_top_level_table_the_loader_accepts():
    assert list(generate()["properties"]) == list(m.TOP_TABLES)


@pytest.mark.parametrize("where,text", toml_snippets(), ids=[w for w, _ in toml_snippets()])
def test_every_docs_snippet_validates_against_the_schema(where, text):
    """A snippet with tables validates as a manifest; one of module keys alone (a part of a
    [modules.NAME] table) validates as a module table, its required keys aside."""
    doc = tomllib.loads(text)  # a snippet that is not TOML fails here, naming the block
    schema = generate()
    if any(key in m.TOP_TABLES for key in doc):
        schema = {**schema, "required": []}  # a snippet may show [targets] without [modules]
    else:
        schema = {**schema["properties"]["modules"]["additionalProperties"], "required": []}
    jsonschema.validate(doc, schema)


@pytest.mark.parametrize("path", example_manifests(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_example_manifest_validates_and_loads(path):
    jsonschema.validate(tomllib.loads(path.read_text()), generate())
    m.parse_manifest(path.read_text(), path)


@pytest.mark.parametrize(
    "text",
    [
        '[modules.m]\nfactory = "a:b"\ninputs.x = { shape = [1] }\n[targets.ampere]\nbackend = "tensorrt-rtx"\n'
        'rtx_compute_capabilities = ["8.6"]\n[cache]\nremote = "s3://b/p"\nread_only = true\n',
        '[modules.m]\ncheckpoint = "ckpt/unet"\nfactory = "diffusers:UNet2DConditionModel.from_pretrained"\n'
        'method = "decode"\noutputs = { sample = "image" }\ninputs.x = { shape = [1] }\n',
    ],
)
def test_what_the_loader_accepts_the_schema_accepts(tmp_path, text):
    m.parse_manifest(text, tmp_path / "engines.toml")
    jsonschema.validate(tomllib.loads(text), generate())


@pytest.mark.parametrize(
    "text,fragment",
    [
        ('[targets.a]\nrtx_compute_capabilities = ["8.6"]\n', "'backend' is a required property"),
        ('[targets.a]\nbackend = "tensorrt-rtx"\nfoo = 1\n', "Additional properties are not allowed"),
        ("[cache]\nremote = 3\n", "3 is not of type 'string'"),
    ],
)
def test_the_schema_refuses_bad_targets_and_cache(text, fragment):
    doc = tomllib.loads('[modules.m]\nfactory = "a:b"\ninputs.x = { shape = [1] }\n' + text)
    with pytest.raises(jsonschema.ValidationError, match=fragment):
        jsonschema.validate(doc, generate())
