"""transformers' eager attention over keys and values rounded to bfloat16: what a runtime that
keeps its KV cache in BF16 (the model's dtype) computes, with every other step in float32.

Importing this module registers attn_implementation="eager_bf16kv" (the model's own
eager_attention_forward on K/V rounded after RoPE, with the eager attention mask);
load_f32_bf16kv(model_dir) loads a model with it in float32.
"""

import sys

import torch
from transformers import AutoModelForCausalLM
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS


def eager_bf16kv(module, query, key, value, attention_mask, *args, **kwargs):
    """Eager attention over keys and values rounded to bfloat16 (a BF16 KV cache). The rest of
    the arguments (scaling, dropout, softcap, sliding_window: each model's own) pass through."""
    key = key.to(torch.bfloat16).to(key.dtype)
    value = value.to(torch.bfloat16).to(value.dtype)
    eager = sys.modules[type(module).__module__].eager_attention_forward  # the model's own
    return eager(module, query, key, value, attention_mask, *args, **kwargs)


ALL_ATTENTION_FUNCTIONS.register("eager_bf16kv", eager_bf16kv)
ALL_MASK_ATTENTION_FUNCTIONS.register("eager_bf16kv", ALL_MASK_ATTENTION_FUNCTIONS["eager"])


def load_f32_bf16kv(model_dir):
    return AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager_bf16kv").eval()
