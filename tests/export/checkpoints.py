"""Tiny random-init diffusers and transformers checkpoints written with save_pretrained (nothing
downloaded), and a manifest that loads them the way a release engineer would: `checkpoint =`, a
library factory (`Class.from_pretrained`), `method = "decode"`, renamed outputs."""

from __future__ import annotations

from pathlib import Path

MANIFEST = """
[defaults]
precision.rules = []

[modules.unet]
checkpoint = "ckpt/unet"
factory = "diffusers:UNet2DConditionModel.from_pretrained"
inputs.sample = { shape = [1, 4, 16, 16] }
inputs.timestep = { shape = [1], dtype = "int64", value = 10 }
inputs.encoder_hidden_states = { shape = [1, 8, 32] }
outputs = { sample = "noise_pred" }

[modules.vae_decoder]
checkpoint = "ckpt/vae"
factory = "diffusers:AutoencoderKL.from_pretrained"
method = "decode"
inputs.z = { shape = [1, 4, 8, 8] }
outputs = { sample = "image" }

[modules.bert]
checkpoint = "ckpt/bert"
factory = "transformers:BertForSequenceClassification.from_pretrained"
inputs.input_ids = { shape = [1, 8], dtype = "int64", kind = "token_ids", vocab_size = 100 }
inputs.attention_mask = { shape = [1, 8], dtype = "int64", value = 1 }
"""


def write_checkpoints(root: Path) -> None:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
    ).save_pretrained(root / "ckpt/unet")
    AutoencoderKL(
        block_out_channels=(32, 64),
        latent_channels=4,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
    ).save_pretrained(root / "ckpt/vae")
    BertForSequenceClassification(
        BertConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=4,
            intermediate_size=64,
            vocab_size=100,
            num_labels=2,
        )
    ).save_pretrained(root / "ckpt/bert")


def checkpoint_project(root: Path) -> Path:
    write_checkpoints(root)
    (root / "engines.toml").write_text(MANIFEST)
    return root
