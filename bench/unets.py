"""Production-size diffusion UNets from the public diffusers configs (random init, nothing
downloaded): the workload of `make bench-big`. SD1.5: 860M parameters (1.6 GB FP16); SDXL: 2.6B
(4.9 GB FP16) with `addition_embed_type="text_time"`, whose FP16 export mixes dtypes in a Concat.
`tiny_sdxl` keeps the SDXL structure at toy widths."""

from __future__ import annotations

import torch

SD15 = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768,
    attention_head_dim=8,
)
SDXL = dict(
    sample_size=128,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)
CONFIGS = {"sd15": SD15, "sdxl": SDXL}


class _Wrap(torch.nn.Module):
    """The UNet as a tensor-in, tensor-out module (SDXL's added conditions as named inputs)."""

    def __init__(self, unet, sdxl: bool):
        super().__init__()
        self.unet, self.sdxl = unet, sdxl

    def forward(self, sample, timestep, encoder_hidden_states, text_embeds=None, time_ids=None):
        extra = {"added_cond_kwargs": {"text_embeds": text_embeds, "time_ids": time_ids}} if self.sdxl else {}
        return self.unet(sample, timestep, encoder_hidden_states, return_dict=False, **extra)[0]


def make_unet(config: str = "sd15", seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**CONFIGS[config]).eval()
    return _Wrap(unet, "text_time" == CONFIGS[config].get("addition_embed_type"))


INPUTS = {
    "sd15": {"sample": [1, 4, 64, 64], "timestep": [1], "encoder_hidden_states": [1, 77, 768]},
    "sdxl": {
        "sample": [1, 4, 128, 128],
        "timestep": [1],
        "encoder_hidden_states": [1, 77, 2048],
        "text_embeds": [1, 1280],
        "time_ids": [1, 6],
    },
}
