"""Small, randomly initialised architectures from the common model libraries (no downloads)."""

from __future__ import annotations

import torch
from torch import nn


class FirstOutput(nn.Module):
    """Hugging Face models return tuples or ModelOutputs; the engine returns the first tensor."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *args):
        out = self.model(*args, return_dict=False)
        return out[0] if isinstance(out, (tuple, list)) else out


class VaeDecode(nn.Module):
    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, z):
        return self.vae.decode(z, return_dict=False)[0]


def _vit(attn: str):
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    cfg = ViTConfig(
        hidden_size=192,
        num_hidden_layers=4,
        num_attention_heads=3,
        intermediate_size=768,
        image_size=64,
        patch_size=16,
        attn_implementation=attn,
    )
    return FirstOutput(ViTModel(cfg))


def hf_vit_eager():
    return _vit("eager")


def hf_vit_sdpa():
    return _vit("sdpa")


def bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=512,
        vocab_size=1000,
        attn_implementation="eager",
    )
    return FirstOutput(BertModel(cfg))


def clip_text():
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    cfg = CLIPTextConfig(
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=512,
        vocab_size=1000,
        max_position_embeddings=77,
    )
    return FirstOutput(CLIPTextModel(cfg))


def vae_decoder():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=16,
        layers_per_block=1,
    )
    return VaeDecode(vae)


def unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return FirstOutput(
        UNet2DConditionModel(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            layers_per_block=1,
            norm_num_groups=16,
            attention_head_dim=8,
        )
    )


def resnetish():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.GroupNorm(8, 64),
        nn.SiLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


def torch_transformer():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(128, 4, 512, batch_first=True, dropout=0.0)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


class SdxlUNet(nn.Module):
    """SDXL's UNet takes its pooled text embeds and micro-conditioning time ids as keyword
    arguments (`added_cond_kwargs`); the engine takes them as two more inputs."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, sample, timestep, encoder_hidden_states, text_embeds, time_ids):
        cond = {"text_embeds": text_embeds, "time_ids": time_ids}
        return self.model(sample, timestep, encoder_hidden_states, added_cond_kwargs=cond, return_dict=False)[0]


def sdxl_unet():
    """The SDXL UNet config at toy widths. `addition_embed_type="text_time"` embeds the six time
    ids in FP32 (diffusers' Timesteps) and concatenates them with the FP16 text embeds: torch
    promotes, the dynamo exporter writes one mixed-dtype Concat (issue 11)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    time_dim, text_dim = 8, 32
    return SdxlUNet(
        UNet2DConditionModel(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            layers_per_block=1,
            transformer_layers_per_block=1,
            cross_attention_dim=32,
            norm_num_groups=16,
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=time_dim,
            projection_class_embeddings_input_dim=text_dim + 6 * time_dim,
        )
    )
