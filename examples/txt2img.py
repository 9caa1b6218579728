"""A small text-to-image pipeline from public configs with random weights (no downloads): a CLIP
text encoder (transformers), a UNet2DConditionModel and an AutoencoderKL decoder (diffusers), a
DDIM scheduler and classifier-free guidance. Sizes follow diffusers' own tiny test configs, so the
whole pipeline builds and verifies in seconds on a CPU; `size="sd15"` gives the SD1.5 shapes
(bench/big_unets.py uses it; never in `make engines`).

The runner `generate` is what a user writes once: it calls the modules by their manifest input
names, `m.unet(sample=..., timestep=..., encoder_hidden_states=...)`, and trtforge runs it three
ways (FP32 PyTorch, as published, one module at a time) to check what comes out.
"""

from __future__ import annotations

import torch
from torch import nn

TINY = {
    "text": {
        "vocab_size": 1000,
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 16,
        "bos_token_id": 0,  # CLIP's own ids (49406, 49407) lie outside a 1000-token vocabulary
        "eos_token_id": 2,
    },
    "unet": {
        "sample_size": 8,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": (32, 64),
        "layers_per_block": 1,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "cross_attention_dim": 32,
        "attention_head_dim": 8,
        "norm_num_groups": 8,
    },
    "vae": {
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 4,
        "block_out_channels": (32, 64),
        "down_block_types": ("DownEncoderBlock2D", "DownEncoderBlock2D"),
        "up_block_types": ("UpDecoderBlock2D", "UpDecoderBlock2D"),
        "norm_num_groups": 8,
    },
}
# SD1.5's published configs (runwayml/stable-diffusion-v1-5), for the bench only
SD15 = {
    "text": {
        "vocab_size": 49408,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "max_position_embeddings": 77,
    },
    "unet": {
        "sample_size": 64,
        "cross_attention_dim": 768,
        "attention_head_dim": 8,
        "block_out_channels": (320, 640, 1280, 1280),
        "layers_per_block": 2,
    },
    "vae": {
        "latent_channels": 4,
        "block_out_channels": (128, 256, 512, 512),
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "layers_per_block": 2,
    },
}
SIZES = {"tiny": TINY, "sd15": SD15}


class TextEncoder(nn.Module):
    def __init__(self, size: str, seed: int):
        super().__init__()
        from transformers import CLIPTextConfig, CLIPTextModel

        torch.manual_seed(seed)
        self.clip = CLIPTextModel(CLIPTextConfig(**SIZES[size]["text"]))

    def forward(self, input_ids):
        return {"hidden": self.clip(input_ids=input_ids).last_hidden_state}


class Denoiser(nn.Module):
    def __init__(self, size: str, seed: int):
        super().__init__()
        from diffusers import UNet2DConditionModel

        torch.manual_seed(seed)
        self.unet = UNet2DConditionModel(**SIZES[size]["unet"])

    def forward(self, sample, timestep, encoder_hidden_states):
        return {"noise_pred": self.unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]}


class VaeDecoder(nn.Module):
    """AutoencoderKL's decode path as a module of its own (the latent scaling included)."""

    def __init__(self, size: str, seed: int):
        super().__init__()
        from diffusers import AutoencoderKL

        torch.manual_seed(seed)
        self.vae = AutoencoderKL(**SIZES[size]["vae"])
        self.scaling = self.vae.config.scaling_factor

    def forward(self, latents):
        return {"image": self.vae.decode(latents / self.scaling, return_dict=False)[0]}


def make_text_encoder(size: str = "tiny", seed: int = 0):
    return TextEncoder(size, seed).eval()


def make_unet(size: str = "tiny", seed: int = 1):
    return Denoiser(size, seed).eval()


def make_vae_decoder(size: str = "tiny", seed: int = 2):
    return VaeDecoder(size, seed).eval()


def generate(m, prompt_ids, uncond_ids, latents, steps: int = 4, guidance: float = 7.5):
    """Classifier-free guidance with a DDIM scheduler: the text encoder once (uncond + prompt as a
    batch of 2), the UNet `steps` times on the doubled latents, the VAE decoder once."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False)
    scheduler.set_timesteps(steps)
    text = m.text_encoder(input_ids=torch.cat([uncond_ids, prompt_ids])).hidden
    x = latents * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        both = torch.cat([x, x])
        eps = m.unet(sample=both, timestep=t.reshape(1).expand(2), encoder_hidden_states=text).noise_pred
        uncond, cond = eps.chunk(2)
        x = scheduler.step(uncond + guidance * (cond - uncond), t, x).prev_sample
    return {"image": m.vae_decoder(latents=x).image}
