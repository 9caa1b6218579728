"""Tiny, randomly initialised configs of the public model libraries, one per attention form the
attention_score rule must find (issue 14), each also FP16-hostile on request.

Hostile: in one block, chosen where the rule has most to walk through (a shifted-window block,
a causal masked block), one component of every query and key head is pinned at HOSTILE (zero
weights, bias HOSTILE, exact in FP16; a Linear without bias gets one). Every score then gains
HOSTILE^2 = 1048576, the same for every key of a row: in FP32 it cancels in the softmax and the
block behaves, in FP16 the score MatMul gives inf (max 65504). With SDPA's pre-scaling by
sqrt(scale) on each side it is still HOSTILE^2 * scale >= 131072. With rotary embeddings the pinned
component is the lowest-frequency pair's (rope_theta = 1e6: the angle stays below 1e-4 over the
sequence), so the rotation leaves it (nearly) constant too.
"""

from __future__ import annotations

import torch
from torch import nn

HOSTILE = 1024.0


class FirstOutput(nn.Module):
    """Hugging Face models return tuples or ModelOutputs; the engine returns the first tensor."""

    def __init__(self, model: nn.Module, **kwargs):
        super().__init__()
        self.model, self.kwargs = model, kwargs

    def forward(self, *args):
        out = self.model(*args, return_dict=False, **self.kwargs)
        return out[0] if isinstance(out, (tuple, list)) else out


def _biased(parent: nn.Module, attr: str) -> nn.Linear:
    lin = getattr(parent, attr)
    if lin.bias is None:
        new = nn.Linear(lin.in_features, lin.out_features, bias=True)
        with torch.no_grad():
            new.weight.copy_(lin.weight)
            new.bias.zero_()
        setattr(parent, attr, new)
        lin = new
    return lin


def pin(parent: nn.Module, attr: str, rows: list[int], value: float = HOSTILE) -> None:
    """Pin output `rows` of the Linear (or GPT-2 Conv1D, weight (in, out)) `parent.attr` at HOSTILE."""
    lin = getattr(parent, attr)
    with torch.no_grad():
        if type(lin).__name__ == "Conv1D":
            lin.weight[:, rows] = 0.0
            lin.bias[rows] = value
            return
        lin = _biased(parent, attr)
        lin.weight[rows] = 0.0
        lin.bias[rows] = value


def heads(n: int, dim: int, at: int = 0, offset: int = 0, stride: int | None = None) -> list[int]:
    return [offset + h * (stride or dim) + at for h in range(n)]


# --- transformers ---------------------------------------------------------------------------------


def gpt2(attn: str = "eager", hostile: bool = False):
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)
    cfg = GPT2Config(n_embd=32, n_layer=1, n_head=2, n_positions=32, vocab_size=512, attn_implementation=attn)
    model = GPT2Model(cfg)
    if hostile:  # causal mask by Where(finfo.min)
        a = model.h[0].attn
        pin(a, "c_attn", heads(2, 16) + heads(2, 16, offset=32))
    return FirstOutput(model)


def llama(attn: str = "eager", hostile: bool = False):
    """GQA (4 query heads, 2 KV heads repeated), rotary embeddings, causal mask."""
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=512,
        max_position_embeddings=64,
        rope_theta=1e6,
        attention_bias=True,
        attn_implementation=attn,
    )
    model = LlamaModel(cfg)
    if hostile:
        a, hd = model.layers[0].self_attn, 16
        pin(a, "q_proj", heads(4, hd, at=hd // 2 - 1))
        pin(a, "k_proj", heads(2, hd, at=hd // 2 - 1))
    return FirstOutput(model, use_cache=False)


def bloom(attn: str = "eager", hostile: bool = False):
    """ALiBi bias, 3-D baddbmm scores reshaped to 4-D before the masked softmax."""
    from transformers import BloomConfig, BloomModel

    torch.manual_seed(0)
    cfg = BloomConfig(hidden_size=32, n_layer=1, n_head=2, vocab_size=512, attn_implementation=attn)
    model = BloomModel(cfg)
    if hostile:  # fused QKV, per head [q, k, v]
        a = model.h[0].self_attention
        pin(a, "query_key_value", heads(2, 16, stride=48) + heads(2, 16, offset=16, stride=48))
    return FirstOutput(model, use_cache=False)


def deberta_v2(attn: str = "eager", hostile: bool = False):
    """Disentangled attention: c2p/p2c scores of Q/K with folded relative-position tables, gathered."""
    from transformers import DebertaV2Config, DebertaV2Model

    torch.manual_seed(0)
    cfg = DebertaV2Config(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=512,
        max_position_embeddings=64,
        relative_attention=True,
        pos_att_type=["p2c", "c2p"],
        position_buckets=8,
        max_relative_positions=16,
        share_att_key=True,
        norm_rel_ebd="layer_norm",
    )
    model = DebertaV2Model(cfg)
    if hostile:
        a = model.encoder.layer[0].attention.self
        pin(a, "query_proj", heads(2, 16))
        pin(a, "key_proj", heads(2, 16))
    return FirstOutput(model)


def t5_encoder(attn: str = "eager", hostile: bool = False):
    """Unscaled scores plus a relative-position bias (bucketed, computed in block 0)."""
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    cfg = T5Config(
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=1,
        num_heads=2,
        vocab_size=512,
        relative_attention_num_buckets=8,
        attn_implementation=attn,
    )
    model = T5EncoderModel(cfg)
    if hostile:
        a = model.encoder.block[0].layer[0].SelfAttention
        pin(a, "q", heads(2, 16), HOSTILE / 2)  # unscaled: 512^2 = 262144 overflows, FP32 keeps
        pin(a, "k", heads(2, 16), HOSTILE / 2)  # 1/32 resolution there
    return FirstOutput(model)


def whisper_encoder(attn: str = "eager", hostile: bool = False):
    from transformers import WhisperConfig, WhisperModel

    torch.manual_seed(0)
    cfg = WhisperConfig(
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_mel_bins=8,
        max_source_positions=16,
        vocab_size=512,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        attn_implementation=attn,
    )
    enc = WhisperModel(cfg).encoder
    if hostile:
        a = enc.layers[0].self_attn
        pin(a, "q_proj", heads(2, 16))
        pin(a, "k_proj", heads(2, 16))  # Whisper's k_proj has no bias: it gets one
    return FirstOutput(enc)


def swin(attn: str = "eager", hostile: bool = False):
    """Window partition Reshapes, relative-position bias, the shifted-window mask in block 1."""
    from transformers import SwinConfig, SwinModel

    torch.manual_seed(0)
    cfg = SwinConfig(
        image_size=32, patch_size=4, embed_dim=16, depths=[2], num_heads=[2], window_size=4, attn_implementation=attn
    )
    model = SwinModel(cfg)
    if hostile:  # the shifted-window block
        a = model.encoder.layers[0].blocks[1].attention
        pin(a, "q_proj", heads(2, 8))
        pin(a, "k_proj", heads(2, 8))
    return FirstOutput(model)


def clip_text(attn: str = "eager", hostile: bool = False):
    """Causal plus padding mask."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    cfg = CLIPTextConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=512,
        max_position_embeddings=32,
        attn_implementation=attn,
    )
    model = CLIPTextModel(cfg)
    if hostile:
        a = model.encoder.layers[0].self_attn
        # eager scales after the MatMul: 512^2 = 262144 overflows it; at 1024^2 FP32's own rounding
        # (1/8 there) moved 0.2 % of the final outputs past the tolerance, with or without FP16
        pin(a, "q_proj", heads(2, 16), HOSTILE / 2)
        pin(a, "k_proj", heads(2, 16), HOSTILE / 2)
    return FirstOutput(model)


def dinov2(attn: str = "eager", hostile: bool = False):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    cfg = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        mlp_ratio=2,
        image_size=28,
        patch_size=7,
        attn_implementation=attn,
    )
    model = Dinov2Model(cfg)
    if hostile:
        a = model.encoder.layer[0].attention
        pin(a, "q_proj", heads(2, 16))
        pin(a, "k_proj", heads(2, 16))
    return FirstOutput(model)


# --- diffusers ------------------------------------------------------------------------------------


def dit(attn: str = "sdpa", hostile: bool = False):
    """diffusers' DiT (adaLN-zero blocks, SDPA attention processor); FP32 timestep constants."""
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(0)
    model = DiTTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        num_layers=1,
        sample_size=8,
        patch_size=2,
        num_embeds_ada_norm=1000,
    )
    if hostile:
        a = model.transformer_blocks[0].attn1
        pin(a, "to_q", heads(2, 16))
        pin(a, "to_k", heads(2, 16))
    return FirstOutput(model)


def gpt2_gated(attn: str = "eager", rare_from: int = 500):
    """GPT-2 whose attention overflows FP16 only on rare tokens (ids >= rare_from): their embedding
    is one large component that the pre-attention LayerNorm keeps (about 5.5) and that query head
    dim 0 reads with weight 100 (ordinary tokens are centred and give about 0 there); key head dim 0
    is pinned at 256. A rare token's row scores about 550 * 256 = 140800 against every key (the
    same for all, so FP32 cancels it), ordinary rows stay small: hot for such inputs only,
    the case where `auto`, judging from the example inputs, misses a block that deployment inputs
    make hot (its probe varies inputs within the examples' range, which holds no rare id)."""
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)
    cfg = GPT2Config(n_embd=32, n_layer=1, n_head=2, n_positions=32, vocab_size=512, attn_implementation=attn)
    model = GPT2Model(cfg)
    c = 31  # the gate component
    with torch.no_grad():
        for table in (model.wte.weight, model.wpe.weight):  # mean zero, component c zero: the
            table[:, c] = 0.0  # LayerNorm gives c = 0 for ordinary tokens at any position
            table[:, :c] -= table[:, :c].mean(dim=1, keepdim=True)
        model.wte.weight[rare_from:] = 0.0
        model.wte.weight[rare_from:, c] = 50.0
        w = model.h[0].attn.c_attn
        for col in (0, 16):  # dim 0 of each query head reads the gate
            w.weight[:, col] = 0.0
            w.weight[c, col] = 100.0
            w.bias[col] = 0.0
        for col in (32, 48):  # dim 0 of each key head is pinned at 256: the gate's score term is
            w.weight[:, col] = 0.0  # the same for every key of a row, so FP32 cancels it
            w.bias[col] = 256.0
    return FirstOutput(model)
