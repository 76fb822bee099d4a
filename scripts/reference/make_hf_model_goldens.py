#!/usr/bin/env python3
"""Tiny random models written by Hugging Face transformers itself, and their reference logits.

usage: python make_hf_model_goldens.py OUT_DIR
       (normally via make_hf_model_goldens.sh, which builds the venv)

Each model in MODELS exercises config keys that change the math: hidden_act gelu_pytorch_tanh
(Llama), a sliding window on every layer (Mistral, prompt >= 3x the window), a sliding window on
some layers only plus the exact erf GELU (Qwen2: use_sliding_window, max_window_layers), YaRN
rope scaling (Qwen3), and Gemma 3's text model (embedding scale, (1 + w) norms, four norms per
layer, q/k norms, GeGLU, query_pre_attn_scalar, local and global rope by layer_types, sliding
windows with a global layer, final logit softcapping; attn_logit_softcapping is set too, and
transformers 5.24 does not apply it) both as Gemma3ForCausalLM and inside
Gemma3ForConditionalGeneration (tied LM head, a small vision tower saved beside the language
model, sliding_window_pattern; its forward applies no final softcapping). For each, the script

  1. builds the config with transformers' own config class and `XxxForCausalLM(config)` under
     torch.manual_seed(seed), then makes the norms 1 + N(0, 0.1) and the biases N(0, 0.1) (the
     default init leaves them 1 and 0), casts to bfloat16 and writes it with save_pretrained()
     into OUT_DIR/models/<name>/ (config.json, generation_config.json, model.safetensors);
  2. loads that directory back with from_pretrained(dtype=torch.float32,
     attn_implementation="eager"): the reference is float32 math on the BF16 weights
     (transformers' own bfloat16 forward differs from it by 0.01-0.08 and is not the reference);
  3. writes OUT_DIR/<name>.safetensors:
       prompt<i>.ids         I32 [len]         the prompt (fixed token ids, see PROMPTS)
       prompt<i>.logits_f32  F32 [len, vocab]  forward over the whole prompt, use_cache=False
       prompt<i>.greedy_f32  I32 [32]          greedy continuation (argmax, EOS disabled): a
                                               no-cache argmax loop, checked equal to generate()
       prompt<i>.logits_f32_bf16kv, prompt<i>.greedy_f32_bf16kv: the same with the attention's
                                               keys and values (after RoPE) rounded to bfloat16
                                               first (attn_implementation "eager_bf16kv"), as a
                                               runtime that keeps its KV cache in BF16 sees them
  4. checks that the feature matters: the same weights under the config without the feature
     (silu, no window, no yarn) give logits that differ by far more than the tests' tolerance,
     and that transformers built what the config says (activation class, mask, rope type).

OUT_DIR/manifest.json records the configs, versions, per prompt the greedy top-2 margins, and
per model how far the logits move without the feature. Single thread, deterministic
algorithms, no GPU: two runs give byte-identical files.
"""

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import (GenerationConfig, Gemma3Config, Gemma3ForCausalLM,  # noqa: E402
                          Gemma3ForConditionalGeneration, Gemma3TextConfig, LlamaConfig,
                          LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)
from hf_bf16_kv import load_f32_bf16kv  # noqa: E402

NEW_TOKENS = 32
VOCAB = 512
COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.05,
              tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)

# Gemma 3's text model: 4 layers, local (window 8, rope theta 1e4) but every 4th global (linear
# rope, factor 8), query_pre_attn_scalar 24 (not head_dim 16), a final logit softcap small enough
# to bend these tiny models' logits, and an attention softcap that transformers' Gemma3Attention
# never applies (the runtime must ignore it too).
GEMMA_TEXT = dict(COMMON, num_hidden_layers=4, head_dim=16, hidden_activation="gelu_pytorch_tanh",
                  sliding_window=8, query_pre_attn_scalar=24, attn_logit_softcapping=0.5,
                  final_logit_softcapping=1.5,
                  layer_types=["sliding_attention"] * 3 + ["full_attention"],
                  rope_parameters={
                      "full_attention": {"rope_type": "linear", "factor": 8.0,
                                         "rope_theta": 1000000.0},
                      "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}})
GEMMA_PLAIN = dict(layer_types=["full_attention"] * 4, attn_logit_softcapping=None,
                   final_logit_softcapping=None, query_pre_attn_scalar=16)
# The multimodal class: tied LM head, the layout from sliding_window_pattern 2 (layers 1 and 3
# global), a SigLIP vision tower (its tensors saved, never used by a text prompt).
GEMMA_MM_TEXT = {k: v for k, v in GEMMA_TEXT.items() if k != "layer_types"}
GEMMA_MM_TEXT.update(num_hidden_layers=4, sliding_window_pattern=2, tie_word_embeddings=True)
GEMMA_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                    num_attention_heads=2, image_size=28, patch_size=14)
GEMMA_MM = dict(text_config=GEMMA_MM_TEXT, vision_config=GEMMA_VISION, mm_tokens_per_image=4,
                tie_word_embeddings=True, initializer_range=0.05)

# name -> (config class, model class, config kwargs, the same without the feature, seed)
MODELS = {
    "llama_gelu_tanh": (
        LlamaConfig, LlamaForCausalLM,
        dict(COMMON, num_hidden_layers=2, hidden_act="gelu_pytorch_tanh", rope_theta=10000.0),
        dict(hidden_act="silu"), 21),
    "mistral_sliding_window": (
        MistralConfig, MistralForCausalLM,
        dict(COMMON, num_hidden_layers=2, sliding_window=8, head_dim=16, rope_theta=10000.0),
        dict(sliding_window=None), 22),
    "qwen2_sliding_layers_gelu": (
        Qwen2Config, Qwen2ForCausalLM,
        dict(COMMON, num_hidden_layers=3, use_sliding_window=True, sliding_window=8,
             max_window_layers=1, hidden_act="gelu", rope_theta=1000000.0),
        dict(use_sliding_window=False, hidden_act="silu"), 23),
    "qwen3_yarn": (
        Qwen3Config, Qwen3ForCausalLM,
        dict(COMMON, num_hidden_layers=2, head_dim=32,
             rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1000000.0,
                              "original_max_position_embeddings": 128}),
        dict(rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}), 24),
    "gemma3_text": (Gemma3TextConfig, Gemma3ForCausalLM, GEMMA_TEXT, GEMMA_PLAIN, 25),
    "gemma3_multimodal": (
        Gemma3Config, Gemma3ForConditionalGeneration, GEMMA_MM,
        dict(text_config=dict(GEMMA_MM_TEXT, sliding_window_pattern=1, **{
            k: v for k, v in GEMMA_PLAIN.items() if k != "layer_types"})), 26),
}

# Fixed prompts (token ids < 512; no tokenizer): lengths 1, 7 and 30 (30 >= 3 x the window 8).
PROMPTS = [
    [1],
    [1, 450, 20, 333, 101, 29, 432],
    [1, 17, 300, 5, 511, 42, 42, 42, 7, 256, 128, 64, 3, 0, 499, 2, 77, 123, 321, 210, 9, 88,
     400, 13, 250, 251, 252, 6, 390, 44],
]
assert [len(p) for p in PROMPTS] == [1, 7, 30]
assert all(0 <= t < VOCAB for p in PROMPTS for t in p)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def build(config_cls, model_cls, kwargs, seed):
    config = config_cls(**kwargs)
    torch.manual_seed(seed)
    model = model_cls(config)
    # Gemma's RMSNorm multiplies by (1 + w): its weights sit around 0.
    norm_mean = 0.0 if model_cls in (Gemma3ForCausalLM, Gemma3ForConditionalGeneration) else 1.0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(norm_mean + 0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
    return model.to(torch.bfloat16).eval()


def load_f32(model_cls, model_dir):
    model, info = model_cls.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    if bad:
        raise SystemExit(f"{model_dir}: loading info not clean: {bad}")
    return model.eval()


def forward_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids]), use_cache=False).logits[0].float()


def greedy_no_cache(model, ids):
    """Plain argmax loop over the whole sequence each step; the per-step top-1 - top-2 gaps."""
    seq, margins = list(ids), []
    with torch.no_grad():
        for _ in range(NEW_TOKENS):
            logits = model(torch.tensor([seq]), use_cache=False).logits[0, -1].float()
            top2 = torch.topk(logits, 2).values
            margins.append(float(top2[0] - top2[1]))
            seq.append(int(torch.argmax(logits)))
    return seq[len(ids):], margins


def greedy_generate(model, ids):
    gc = GenerationConfig(do_sample=False, max_new_tokens=NEW_TOKENS, min_new_tokens=0,
                          eos_token_id=None, pad_token_id=0, bos_token_id=None, use_cache=True,
                          num_beams=1, temperature=None, top_p=None, top_k=None)
    model.generation_config.eos_token_id = None
    x = torch.tensor([ids], dtype=torch.long)
    with torch.no_grad():
        out = model.generate(x, attention_mask=torch.ones_like(x), generation_config=gc)
    return [int(t) for t in out[0, len(ids):]]


def check_built(name, model):
    """transformers built what the config asks for; returns notes for the manifest."""
    c = model.config
    text = model.model.language_model if hasattr(model.model, "language_model") else model.model
    c = getattr(c, "text_config", c)
    layer0 = text.layers[0]
    notes = {
        "config_class": type(c).__name__,
        "act_fn": type(layer0.mlp.act_fn).__name__,
        "rotary_rope_type": str(getattr(text.rotary_emb, "rope_type", None)),
        "attention_scaling": float(getattr(text.rotary_emb, "attention_scaling", 1.0)),
        "sliding_window": getattr(c, "sliding_window", None),
        "layer_types": list(getattr(c, "layer_types", None) or []),
        "layer_sliding_window": [getattr(l.self_attn, "sliding_window", None)
                                 for l in text.layers],
    }
    if name == "llama_gelu_tanh":
        assert notes["act_fn"] == "GELUTanh", notes
    if name == "qwen2_sliding_layers_gelu":
        assert notes["act_fn"] == "GELUActivation", notes
        assert notes["layer_types"] == ["full_attention", "sliding_attention",
                                        "sliding_attention"], notes
        assert notes["layer_sliding_window"] == [None, 8, 8], notes
    if name == "mistral_sliding_window":
        assert notes["sliding_window"] == 8, notes
    if name == "qwen3_yarn":
        assert notes["rotary_rope_type"] == "yarn", notes
        assert notes["attention_scaling"] > 1.1, notes
    if name.startswith("gemma3"):
        assert notes["act_fn"] == "GELUTanh", notes
        global_layers = [1, 3] if name == "gemma3_multimodal" else [3]
        assert notes["layer_sliding_window"] == [None if i in global_layers else 8
                                                 for i in range(4)], notes
        assert float(text.embed_tokens.embed_scale) == 8.0, notes  # sqrt(64), exact in BF16
        assert layer0.self_attn.scaling == 24 ** -0.5, notes
        notes["rope_parameters"] = c.rope_parameters
    return notes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "transformers": transformers.__version__, "safetensors": safetensors.__version__,
                "numpy": np.__version__}
    print(f"versions: {versions}", file=sys.stderr)
    models_dir = os.path.join(args.out_dir, "models")
    os.makedirs(models_dir, exist_ok=True)
    manifest = {"generator": "scripts/reference/make_hf_model_goldens.py", "versions": versions,
                "prompts": PROMPTS, "new_tokens": NEW_TOKENS, "models": {}}

    for name, (config_cls, model_cls, kwargs, without, seed) in MODELS.items():
        print(f"{name}:", file=sys.stderr)
        mdir = os.path.join(models_dir, name)
        shutil.rmtree(mdir, ignore_errors=True)
        build(config_cls, model_cls, kwargs, seed).save_pretrained(mdir)
        model = load_f32(model_cls, mdir)
        notes = check_built(name, model)
        # The same BF16 weights under the config without the feature.
        plain_dir = mdir + ".without-feature"
        shutil.rmtree(plain_dir, ignore_errors=True)
        build(config_cls, model_cls, dict(kwargs, **without), seed).save_pretrained(plain_dir)
        plain = load_f32(model_cls, plain_dir)
        shutil.rmtree(plain_dir)

        entry = {"config_json": json.load(open(os.path.join(mdir, "config.json"))),
                 "files_sha256": {f: sha256(os.path.join(mdir, f)) for f in sorted(os.listdir(mdir))},
                 "seed": seed, "built": notes, "without_feature": without, "prompts": []}
        tensors = {}
        bf16kv = load_f32_bf16kv(mdir)
        for i, ids in enumerate(PROMPTS):
            logits = forward_logits(model, ids)
            greedy, margins = greedy_no_cache(model, ids)
            generated = greedy_generate(model, ids)
            moved = float((forward_logits(plain, ids) - logits).abs().max())
            pe = {"len": len(ids), "max_abs_logit_f32": float(logits.abs().max()),
                  "greedy_f32_top2_margins": margins,
                  "greedy_f32_min_top2_margin": min(margins),
                  "generate_equals_no_cache_loop": generated == greedy,
                  "max_abs_logit_change_without_feature": moved}
            entry["prompts"].append(pe)
            tensors[f"prompt{i}.ids"] = torch.tensor(ids, dtype=torch.int32)
            tensors[f"prompt{i}.logits_f32"] = logits.contiguous()
            tensors[f"prompt{i}.greedy_f32"] = torch.tensor(greedy, dtype=torch.int32)
            tensors[f"prompt{i}.logits_f32_bf16kv"] = forward_logits(bf16kv, ids).contiguous()
            greedy_kv, margins_kv = greedy_no_cache(bf16kv, ids)
            tensors[f"prompt{i}.greedy_f32_bf16kv"] = torch.tensor(greedy_kv, dtype=torch.int32)
            pe["greedy_f32_bf16kv_top2_margins"] = margins_kv
            pe["greedy_f32_bf16kv_min_top2_margin"] = min(margins_kv)
            print(f"  prompt{i} len={len(ids)} max|logit|={pe['max_abs_logit_f32']:.3f} "
                  f"without feature moves logits by {moved:.3e}; generate == loop: "
                  f"{generated == greedy}; min margin {min(margins):.2e}", file=sys.stderr)
        # Prompt 0 is a single token: windows and most of yarn do not show there. The longest
        # prompt must show the feature far beyond the tests' 1e-4.
        assert entry["prompts"][2]["max_abs_logit_change_without_feature"] > 1e-2, name
        manifest["models"][name] = entry
        save_file(tensors, os.path.join(args.out_dir, f"{name}.safetensors"),
                  metadata={"generator": f"scripts/reference/make_hf_model_goldens.py {name} "
                                         f"transformers {transformers.__version__} "
                                         f"torch {torch.__version__}"})
    with open(os.path.join(args.out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    for root, _, files in os.walk(args.out_dir):
        for fn in files:
            os.chmod(os.path.join(root, fn), 0o644)
    print(f"wrote {len(MODELS)} models to {args.out_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
