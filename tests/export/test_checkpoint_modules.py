"""Checkpoint-native modules (issue 29): `checkpoint = "ckpt/unet"` (a folder keyed by content),
`factory = "diffusers:UNet2DConditionModel.from_pretrained"` (the factory receives the checkpoint's
path), `method = "decode"` and `outputs = { sample = "image" }`, on tiny random-init checkpoints
that save_pretrained wrote (nothing downloaded)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from tests.conftest import built_once, run_cli
from tests.export.checkpoints import MANIFEST, checkpoint_project
from trtforge.errors import ManifestError
from trtforge.export import ExportStage
from trtforge.manifest import load_manifest, parse_manifest


def _key(root):
    manifest = load_manifest(root / "engines.toml")
    return ExportStage().key_material(manifest.module("unet"), manifest.root)


def test_a_checkpoint_folder_keys_the_export_by_content_not_path(tmp_path):
    folder = tmp_path / "ckpt/unet"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "weights.safetensors").write_bytes(b"0" * 64)
    (folder / ".cache").mkdir()  # a download tool's metadata: not part of the model
    (folder / ".cache/meta").write_text("a")
    (tmp_path / "engines.toml").write_text(MANIFEST)
    key = _key(tmp_path)
    assert key["checkpoint"] == {
        "config.json": key["checkpoint"]["config.json"],
        "weights.safetensors": key["checkpoint"]["weights.safetensors"],
    }
    assert "ckpt/unet" not in json.dumps(key)  # the path is not in the key: a moved folder keeps its cache
    (folder / ".cache/meta").write_text("b")
    assert _key(tmp_path) == key
    (folder / "weights.safetensors").write_bytes(b"1" * 64)  # new weights: a new export
    new = _key(tmp_path)
    assert new != key
    (tmp_path / "moved").mkdir()
    folder.rename(tmp_path / "moved/unet")
    (tmp_path / "engines.toml").write_text(MANIFEST.replace('"ckpt/unet"', '"moved/unet"'))
    assert _key(tmp_path) == new  # the same files elsewhere: the same key


def test_a_missing_checkpoint_names_the_field(tmp_path):
    (tmp_path / "engines.toml").write_text(MANIFEST)
    with pytest.raises(ManifestError) as e:
        _key(tmp_path)
    assert "modules.unet.checkpoint" in e.value.one_line() and "does not exist" in e.value.one_line()


@pytest.mark.parametrize(
    "edit,message",
    [
        ('method = "decode"', None),
        ('method = "_private"', "modules.m.method: expected a method name"),
        ("outputs = { sample = 3 }", "modules.m.outputs.sample: expected a new name"),
        ('outputs = { a = "x", b = "x" }', "output 'x' is named twice"),
        ('checkpoint = ""', "modules.m.checkpoint: expected a path"),
    ],
)
def test_manifest_checks_the_new_keys(tmp_path, edit, message):
    text = f'[modules.m]\nfactory = "a:b"\ninputs.x = {{ shape = [1] }}\n{edit}\n'
    if message is None:
        assert parse_manifest(text, tmp_path / "engines.toml").modules[0].method == "decode"
        return
    with pytest.raises(ManifestError) as e:
        parse_manifest(text, tmp_path / "engines.toml")
    assert message in e.value.one_line()


def _exports(root):
    """Export every module of the checkpoint manifest (the export stage only, through the driver)."""
    from trtforge.driver.api import open_store
    from trtforge.driver.lifecycle import records_until

    checkpoint_project(root)
    manifest = load_manifest(root / "engines.toml")
    store = open_store(manifest)
    for module in manifest.modules:
        records_until(store, manifest, module, "export")


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    return built_once(tmp_path_factory, "checkpoint-exports", _exports)


def _export_dir(root, name):
    from trtforge.driver.api import open_store

    manifest = load_manifest(root / "engines.toml")
    store = open_store(manifest, writable=False)
    return store.view(store.lookup(store.last(name, "export")["key"]))


@pytest.mark.slow  # three real exports (a UNet, a VAE decoder, a BERT classifier)
@pytest.mark.parametrize(
    "name,inputs,outputs",
    [
        ("unet", ["sample", "timestep", "encoder_hidden_states"], ["noise_pred"]),
        ("vae_decoder", ["z"], ["image"]),
        ("bert", ["input_ids", "attention_mask"], ["logits"]),
    ],
)
def test_checkpoint_modules_export_with_their_names(exported, name, inputs, outputs):
    folder = _export_dir(exported, name)
    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    assert [i.name for i in graph.input] == inputs
    assert [o.name for o in graph.output] == outputs
    assert sorted(np.load(folder / "reference.npz").files) == outputs
    if name == "vae_decoder":  # decode() exported as the module itself: weights keep the model's names
        weights = [t.name for t in onnx.load(str(folder / "model.onnx"), load_external_data=False).graph.initializer]
        assert "decoder.conv_in.weight" in weights and "post_quant_conv.weight" in weights, weights[:5]


@pytest.mark.slow  # a real export
def test_method_decode_exports_the_decoder_not_forward(exported):
    """The recorded reference is AutoencoderKL.decode(z).sample on the recorded z (forward() would
    take an image and encode it first)."""
    import torch
    from diffusers import AutoencoderKL

    folder = _export_dir(exported, "vae_decoder")
    z = np.load(folder / "inputs.npz")["z"]
    vae = AutoencoderKL.from_pretrained(str(exported / "ckpt/vae")).eval()
    with torch.no_grad():
        want = vae.decode(torch.from_numpy(z).float()).sample.numpy()
    np.testing.assert_allclose(np.load(folder / "reference.npz")["image"], want, rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # runs the console script and builds an engine
def test_build_publishes_the_decoder_under_its_new_output_name(exported, tmp_path):
    import shutil

    root = tmp_path / "p"
    shutil.copytree(exported, root, symlinks=True)
    r = run_cli("build", "--json", "--module", "vae_decoder", cwd=root, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    (module,) = json.loads(r.stdout)["modules"]
    assert module["stages"]["export"]["state"] == "cached"  # the copy kept the cache: same content, same key
    sidecar = next(p for p in (root / "engines").rglob("vae_decoder.json"))
    assert "image" in json.dumps(json.loads(sidecar.read_text()))


@pytest.mark.slow  # imports diffusers (seconds): kept out of the fast lane
def test_a_class_given_a_checkpoint_is_told_to_use_from_pretrained(tmp_path):
    pytest.importorskip("diffusers")
    from trtforge.errors import ExportError
    from trtforge.export.torch_export import build_module

    (tmp_path / "ckpt/vae").mkdir(parents=True)
    text = '[modules.v]\ncheckpoint = "ckpt/vae"\nfactory = "diffusers:AutoencoderKL"\ninputs.z = { shape = [1, 4, 8, 8] }\n'
    module = parse_manifest(text, tmp_path / "engines.toml").modules[0]
    with pytest.raises(ExportError) as e:
        build_module(module, tmp_path)
    assert "factory = 'diffusers:AutoencoderKL.from_pretrained'" in e.value.one_line()


def test_a_method_the_module_lacks_is_one_line_naming_the_field(tmp_path):
    from trtforge.errors import ExportError
    from trtforge.export.torch_export import build_module

    text = (
        '[modules.l]\nfactory = "torch.nn:Linear"\nfactory_args = { in_features = 2, out_features = 2 }\n'
        'method = "forwrd"\ninputs.x = { shape = [1, 2] }\n'
    )
    with pytest.raises(ExportError) as e:
        build_module(parse_manifest(text, tmp_path / "engines.toml").modules[0], tmp_path)
    assert "modules.l.method: Linear has no method 'forwrd'" in e.value.one_line()
    assert "did you mean 'forward'?" in e.value.one_line()
