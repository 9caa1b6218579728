"""A small causal language model (transformers' Llama architecture, random weights) and a greedy
decoding runner: a prefill over the (left-padded) prompt, then decode steps over a fixed window.

Static shapes: the decode module always sees the whole window [batch, prompt + new tokens] with an
attention mask, so one engine serves every step (no KV cache: the point is the check, not speed).
Left padding is what batched generation does; positions count only real tokens.
"""

from __future__ import annotations

import torch
from torch import nn

TINY = {
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
}


class CausalLM(nn.Module):
    def __init__(self, seed: int):
        super().__init__()
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(seed)
        self.lm = LlamaForCausalLM(LlamaConfig(**TINY, attn_implementation="eager"))

    def forward(self, input_ids, attention_mask, position_ids):
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
        return {"logits": out.logits}


def make_lm(seed: int = 0):
    """Prefill and decode are the same weights exported at two window lengths."""
    return CausalLM(seed).eval()


def positions(mask):
    return (mask.cumsum(-1) - 1).clamp(min=0)


def greedy(m, input_ids, attention_mask, new_tokens: int = 8):
    """Greedy decoding of `new_tokens` tokens after a left-padded prompt batch."""
    batch, prompt = input_ids.shape
    logits = m.lm_prefill(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=positions(attention_mask)
    ).logits
    token = logits[:, -1].argmax(-1)
    window = torch.zeros(batch, prompt + new_tokens - 1, dtype=input_ids.dtype)
    mask = torch.zeros_like(window)
    window[:, :prompt], mask[:, :prompt] = input_ids, attention_mask
    out = [token]
    for k in range(new_tokens - 1):
        at = prompt + k
        window[:, at], mask[:, at] = token, 1
        logits = m.lm_decode(input_ids=window, attention_mask=mask, position_ids=positions(mask)).logits
        token = logits[:, at].argmax(-1)
        out.append(token)
    return {"tokens": torch.stack(out, dim=1)}
