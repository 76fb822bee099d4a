#!/usr/bin/env python3
"""Reference logits from Hugging Face transformers for tiny random models made by `df11 make-tiny`.

usage: python make_reference_logits.py DF11_BIN OUT_DIR [--work DIR]
       (normally via make_reference_logits.sh, which builds the venv)

For each model in MODELS the script runs `DF11_BIN make-tiny <flags> DIR/<name>` in a temporary
directory (the models themselves are not committed: tests regenerate them with the same flags,
make-tiny is deterministic for a seed; the sha256 of its files is in the manifest), loads it
with transformers on the CPU and writes OUT_DIR/<name>.safetensors:

  prompt<i>.ids              I32 [len]         the prompt (fixed token ids, see PROMPTS)
  prompt<i>.logits_f32       F32 [len, vocab]  full-sequence forward, model in float32
                                               (BF16 weights upcast exactly), every position
  prompt<i>.greedy_f32       I32 [32]          greedy generate(), float32 model
  prompt<i>.greedy_bf16      I32 [32]          greedy generate(), bfloat16 model
  prompt<i>.last_logits_bf16 F32 [vocab]       last-position logits of the bfloat16 model's
                                               full-sequence forward (bf16 values, widened)
  prompt<i>.logits_f32_bf16kv, prompt<i>.greedy_f32_bf16kv: as logits_f32 / greedy_f32 (the
                                               no-cache argmax loop) with the attention's keys
                                               and values rounded to bfloat16 (hf_bf16_kv.py), as
                                               a runtime keeping a BF16 KV cache computes them

and OUT_DIR/manifest.json (make-tiny flags, config.json, versions, per-prompt statistics).

Generation: do_sample=False, max_new_tokens=32, and EOS stopping disabled (eos_token_id=None in
the GenerationConfig) so that always exactly 32 tokens are produced; the tokens are the plain
argmax at each step (no logits processors). Attention: attn_implementation="eager" (the
reference implementation; in bf16 it upcasts the softmax to float32, like the other HF paths).
Runs with one thread, torch.use_deterministic_algorithms(True), no GPU: two runs give
byte-identical files.
"""

import argparse
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoModelForCausalLM, GenerationConfig  # noqa: E402
from hf_bf16_kv import load_f32_bf16kv  # noqa: E402

NEW_TOKENS = 32

# name -> exact `df11 make-tiny` flags (the output directory is appended).
MODELS = {
    "llama_gqa": ["--arch", "llama", "--layers", "2", "--hidden", "64", "--heads", "4",
                  "--kv-heads", "2", "--intermediate", "160", "--vocab", "512", "--seed", "11"],
    "llama_tied": ["--arch", "llama", "--layers", "2", "--hidden", "64", "--heads", "4",
                   "--kv-heads", "4", "--intermediate", "128", "--vocab", "512", "--seed", "12",
                   "--tie-embeddings"],
    "qwen2": ["--arch", "qwen2", "--layers", "2", "--hidden", "64", "--heads", "4",
              "--kv-heads", "2", "--intermediate", "128", "--vocab", "512", "--seed", "13"],
    "qwen3": ["--arch", "qwen3", "--layers", "2", "--hidden", "64", "--heads", "4",
              "--kv-heads", "2", "--head-dim", "32", "--intermediate", "128", "--vocab", "512",
              "--seed", "14"],
    "mistral": ["--arch", "mistral", "--layers", "2", "--hidden", "64", "--heads", "4",
                "--kv-heads", "1", "--intermediate", "128", "--vocab", "512", "--seed", "15"],
}

# Fixed prompts (token ids < 512; no tokenizer involved).
PROMPTS = [
    [1],
    [1, 450, 20, 333, 101, 29, 432],
    [1, 17, 300, 5, 511, 42, 42, 42, 7, 256, 128, 64, 3, 0, 499, 2, 77, 123, 321, 210, 9, 88,
     400],
]
assert [len(p) for p in PROMPTS] == [1, 7, 23]
assert all(0 <= t < 512 for p in PROMPTS for t in p)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def make_tiny(df11, flags, out_dir):
    cmd = [df11, "make-tiny", *flags, out_dir]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return cmd


def llama3_inv_freq(cfg):
    """llama3 rope frequencies computed here from config.json, independently of transformers."""
    rs = cfg["rope_scaling"]
    d = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    base = cfg["rope_theta"]
    inv = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.int64).to(torch.float32) / d))
    factor, lf, hf = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    low_wl, high_wl = old / lf, old / hf
    wl = 2 * math.pi / inv
    out = torch.where(wl > low_wl, inv / factor, inv)
    smooth = (old / wl - lf) / (hf - lf)
    smoothed = (1 - smooth) * out / factor + smooth * out
    medium = ~(wl < high_wl) * ~(wl > low_wl)
    return torch.where(medium, smoothed, out), inv


def load(model_dir, dtype, tied):
    model, info = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=dtype, attn_implementation="eager", output_loading_info=True)
    allowed_missing = {"lm_head.weight"} if tied else set()
    bad = {k: v for k, v in info.items()
           if v and not (k == "missing_keys" and set(v) <= allowed_missing)}
    if bad:
        raise SystemExit(f"{model_dir}: loading info not clean: {bad}")
    model.eval()
    assert model.dtype == dtype, (model.dtype, dtype)
    return model, {k: sorted(v) if isinstance(v, (set, list)) else str(v) for k, v in info.items()}


def check_features(name, cfg, model):
    """Make sure transformers uses the config's features; returns notes for the manifest."""
    c = model.config
    attn = model.model.layers[0].self_attn
    d = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    notes = {
        "config_class": type(c).__name__,
        "model_class": type(model).__name__,
        "rope_parameters": dict(getattr(c, "rope_parameters", None) or {}),
        "rotary_rope_type": getattr(model.model.rotary_emb, "rope_type", None),
        "head_dim": int(attn.head_dim),
        "q_proj_bias": attn.q_proj.bias is not None,
        "k_proj_bias": attn.k_proj.bias is not None,
        "v_proj_bias": attn.v_proj.bias is not None,
        "o_proj_bias": attn.o_proj.bias is not None,
        "qk_norm": hasattr(attn, "q_norm"),
        "num_key_value_groups": int(attn.num_key_value_groups),
        "tied_lm_head": model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(),
        "rms_norm_eps": float(c.rms_norm_eps),
        "sliding_window": getattr(c, "sliding_window", None),
        "layer_types": list(getattr(c, "layer_types", None) or []),
    }
    print(f"  [{name}] rope_scaling={getattr(c, 'rope_scaling', None)} head_dim={notes['head_dim']}"
          f" q_proj.bias={notes['q_proj_bias']} qk_norm={notes['qk_norm']}"
          f" tied={notes['tied_lm_head']}", file=sys.stderr)
    assert notes["head_dim"] == d
    assert attn.q_proj.weight.shape == (cfg["num_attention_heads"] * d, cfg["hidden_size"])
    assert attn.k_proj.weight.shape == (cfg["num_key_value_heads"] * d, cfg["hidden_size"])
    assert notes["tied_lm_head"] == bool(cfg["tie_word_embeddings"])
    assert notes["rope_parameters"].get("rope_theta") == cfg["rope_theta"]
    assert all(t == "full_attention" for t in notes["layer_types"]), notes["layer_types"]
    if cfg["model_type"] == "llama":
        assert cfg["rope_scaling"]["rope_type"] == "llama3"
        assert notes["rotary_rope_type"] == "llama3", notes["rotary_rope_type"]
        ref, unscaled = llama3_inv_freq(cfg)
        got = model.model.rotary_emb.inv_freq.float()
        assert torch.allclose(got, ref, rtol=1e-6, atol=0), (got, ref)
        notes["llama3_inv_freq_matches_independent_formula"] = True
        notes["llama3_scaled_frequencies"] = int((ref != unscaled).sum())
        assert notes["llama3_scaled_frequencies"] > 0
    else:
        assert notes["rotary_rope_type"] == "default", notes["rotary_rope_type"]
    if cfg["model_type"] == "qwen2":
        assert notes["q_proj_bias"] and notes["k_proj_bias"] and notes["v_proj_bias"]
        assert not notes["o_proj_bias"]
    else:
        assert not notes["q_proj_bias"]
    assert notes["qk_norm"] == (cfg["model_type"] == "qwen3")
    if cfg["model_type"] == "qwen3":
        assert notes["head_dim"] == 32
    return notes


def greedy(model, ids):
    gc = GenerationConfig(do_sample=False, max_new_tokens=NEW_TOKENS, min_new_tokens=0,
                          eos_token_id=None, pad_token_id=0, bos_token_id=None, use_cache=True,
                          num_beams=1, temperature=None, top_p=None, top_k=None)
    # generate() fills a None eos_token_id from model.generation_config (eos 2 from
    # generation_config.json), so EOS has to be removed there too. The explicit all-ones
    # attention mask matters: without it generate() masks out prompt tokens equal to pad_token_id.
    model.generation_config.eos_token_id = None
    x = torch.tensor([ids], dtype=torch.long)
    with torch.no_grad():
        out = model.generate(x, attention_mask=torch.ones_like(x), generation_config=gc)
    new = out[0, len(ids):]
    assert new.numel() == NEW_TOKENS, new.numel()
    return new.to(torch.int32)


def greedy_no_cache(model, ids):
    """Plain argmax loop recomputing the whole sequence each step (cross-check of generate).

    Also returns, per step, the gap between the largest and second-largest logit: a runtime whose
    logits differ from these by more than half the gap may legitimately pick another token."""
    seq = list(ids)
    margins = []
    with torch.no_grad():
        for _ in range(NEW_TOKENS):
            logits = model(torch.tensor([seq]), use_cache=False).logits[0, -1].float()
            top2 = torch.topk(logits, 2).values
            margins.append(float(top2[0] - top2[1]))
            seq.append(int(torch.argmax(logits)))
    return seq[len(ids):], margins


def forward_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids]), use_cache=False).logits[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("df11")
    ap.add_argument("out_dir")
    ap.add_argument("--work", help="directory for the tiny models (default: a temp dir, removed)")
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
    }
    print(f"versions: {versions}", file=sys.stderr)

    os.makedirs(args.out_dir, exist_ok=True)
    tmp = None
    work = args.work
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="df11-ref-logits-")
        work = tmp.name
    manifest = {
        "generator": "scripts/reference/make_reference_logits.py",
        "versions": versions,
        "settings": {
            "device": "cpu",
            "threads": 1,
            "deterministic_algorithms": True,
            "attn_implementation": "eager",
            "f32": "from_pretrained(dir, dtype=torch.float32): BF16 weights upcast exactly",
            "bf16": "from_pretrained(dir, dtype=torch.bfloat16)",
            "generate": {"do_sample": False, "max_new_tokens": NEW_TOKENS, "num_beams": 1,
                         "eos_token_id": None, "pad_token_id": 0, "use_cache": True,
                         "note": "EOS stopping disabled: always 32 argmax tokens"},
            "logits_f32": "forward over the whole prompt, use_cache=False, all positions",
            "last_logits_bf16": "bf16 model forward over the whole prompt, last position, "
                                "bf16 values widened to float32",
            "logits_f32_bf16kv": "as logits_f32 with attention keys and values rounded to "
                                 "bfloat16 (attn_implementation eager_bf16kv, hf_bf16_kv.py)",
        },
        "prompts": PROMPTS,
        "models": {},
    }

    for name, flags in MODELS.items():
        print(f"{name}:", file=sys.stderr)
        mdir = os.path.join(work, name)
        if os.path.exists(mdir):
            raise SystemExit(f"{mdir} exists")
        make_tiny(args.df11, flags, mdir)
        with open(os.path.join(mdir, "config.json")) as f:
            cfg = json.load(f)
        files = {fn: sha256(os.path.join(mdir, fn)) for fn in sorted(os.listdir(mdir))}
        tied = bool(cfg.get("tie_word_embeddings"))

        m32, info32 = load(mdir, torch.float32, tied)
        m16, info16 = load(mdir, torch.bfloat16, tied)
        features = check_features(name, cfg, m32)
        check_features(name, cfg, m16)
        # the f32 model holds exactly the BF16 weights
        sd16 = m16.state_dict()
        for k, v in m32.state_dict().items():
            assert torch.equal(v, sd16[k].float()), k

        tensors = {}
        entry = {
            "make_tiny_flags": flags,
            "make_tiny_command": "DF11 make-tiny " + " ".join(flags) + " OUT_DIR",
            "config_json": cfg,
            "make_tiny_files_sha256": files,
            "versions": versions,
            "loading_info_f32": info32,
            "transformers_view": features,
            "prompts": [],
        }
        vocab = cfg["vocab_size"]
        m32kv = load_f32_bf16kv(mdir)
        for i, ids in enumerate(PROMPTS):
            logits32 = forward_logits(m32, ids)
            assert logits32.dtype == torch.float32 and logits32.shape == (len(ids), vocab)
            logits16 = forward_logits(m16, ids)
            assert logits16.dtype == torch.bfloat16
            last16 = logits16[-1].float()
            g32 = greedy(m32, ids)
            g16 = greedy(m16, ids)
            nc32, margins32 = greedy_no_cache(m32, ids)
            nc16, margins16 = greedy_no_cache(m16, ids)

            p = f"prompt{i}"
            tensors[f"{p}.ids"] = torch.tensor(ids, dtype=torch.int32)
            tensors[f"{p}.logits_f32"] = logits32.contiguous()
            tensors[f"{p}.greedy_f32"] = g32.contiguous()
            tensors[f"{p}.greedy_bf16"] = g16.contiguous()
            tensors[f"{p}.last_logits_bf16"] = last16.contiguous()
            tensors[f"{p}.logits_f32_bf16kv"] = forward_logits(m32kv, ids).contiguous()
            nckv, margins_kv = greedy_no_cache(m32kv, ids)
            tensors[f"{p}.greedy_f32_bf16kv"] = torch.tensor(nckv, dtype=torch.int32)

            g32l, g16l = g32.tolist(), g16.tolist()
            first_diff = next((j for j, (a, b) in enumerate(zip(g32l, g16l)) if a != b), None)
            d_last = (logits32[-1] - last16).abs()
            pe = {
                "len": len(ids),
                "max_abs_logit_f32": float(logits32.abs().max()),
                "max_abs_last_logit_bf16": float(last16.abs().max()),
                "max_abs_diff_last_logits_f32_vs_bf16": float(d_last.max()),
                "argmax_last_f32": int(torch.argmax(logits32[-1])),
                "argmax_last_bf16": int(torch.argmax(last16)),
                "greedy_f32_bf16_agree": g32l == g16l,
                "greedy_first_difference": first_diff,
                "greedy_f32_equals_no_cache_argmax_loop": nc32 == g32l,
                "greedy_bf16_equals_no_cache_argmax_loop": nc16 == g16l,
                "greedy_f32_min_top2_margin": min(margins32),
                "greedy_f32_min_top2_margin_step": int(np.argmin(margins32)),
                # steps where the bf16 model's two largest logits are exactly equal (argmax
                # then takes the lower token id, as torch.argmax does inside generate())
                "greedy_bf16_tie_steps": [j for j, v in enumerate(margins16) if v == 0.0],
                "greedy_f32_top2_margins": margins32,
                "greedy_bf16_top2_margins": margins16,
                "greedy_f32_bf16kv_top2_margins": margins_kv,
                "greedy_f32_contains_eos": 2 in g32l,
            }
            entry["prompts"].append(pe)
            print(f"  prompt{i} len={len(ids)} max|logit|={pe['max_abs_logit_f32']:.4f}"
                  f" f32/bf16 greedy agree={pe['greedy_f32_bf16_agree']}"
                  f" (first diff {first_diff}) cache==nocache f32={pe['greedy_f32_equals_no_cache_argmax_loop']}"
                  f" bf16={pe['greedy_bf16_equals_no_cache_argmax_loop']}"
                  f" min margin {pe['greedy_f32_min_top2_margin']:.2e}"
                  f" bf16 ties at {pe['greedy_bf16_tie_steps']}", file=sys.stderr)

        entry["max_abs_logit_f32"] = max(pe["max_abs_logit_f32"] for pe in entry["prompts"])
        entry["greedy_f32_bf16_agree_all"] = all(pe["greedy_f32_bf16_agree"]
                                                for pe in entry["prompts"])
        manifest["models"][name] = entry
        save_file(tensors, os.path.join(args.out_dir, f"{name}.safetensors"),
                  # one key only: safetensors writes the metadata map in hash order, so
                  # several keys would make the bytes differ from run to run
                  metadata={"generator": f"scripts/reference/make_reference_logits.py {name} "
                                         f"transformers {transformers.__version__} "
                                         f"torch {torch.__version__}"})
        del m32, m16

    with open(os.path.join(args.out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    for fn in os.listdir(args.out_dir):
        os.chmod(os.path.join(args.out_dir, fn), 0o644)
    if tmp is not None:
        tmp.cleanup()
    print(f"wrote {len(MODELS)} models to {args.out_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
