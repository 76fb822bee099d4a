#!/usr/bin/env python3
"""DF11 interop for tied embeddings, checked with the reference Python package (dfloat11==0.5.0).

usage: python make_tied_interop.py DF11_BIN OUT_DIR [--work DIR]
       (normally via make_tied_interop.sh, which builds the venv)

For a tiny random Llama with tie_word_embeddings (made by `DF11_BIN make-tiny`, flags in MODEL):

1. The reference encoder `dfloat11.compress_model` (save_single_file=False, the published layout)
   compresses the model loaded by transformers. Its output is written to OUT_DIR/reference_df11/:
   it stores an `lm_head` unit equal to the embedding (`df11 verify` must accept that).
2. `DF11_BIN compress` compresses the same BF16 directory. The reference loader
   (`DFloat11Model.from_pretrained(dir, device="cpu", bfloat16_model=...)`, whose
   `load_and_replace_tensors` decides where every tensor goes and installs the decode hooks) loads
   that directory, and the model is run in float32 on the prompts: the logits must equal, bit for
   bit, those of transformers' own float32 model loaded from the BF16 directory. The same is
   checked for the reference's own directory, and the directory without its lm_head file (the
   layout `df11 compress` wrote before it stored lm_head for tied models) is shown to give other
   logits (the LM head keeps the values it was initialised with).

OUT_DIR/logits.safetensors: prompt<i>.ids (I32 [len]), prompt<i>.logits_f32 (F32 [len, vocab]):
the reference loader's float32 logits for our directory, every position;
prompt<i>.logits_f32_bf16kv: transformers' float32 logits with keys and values rounded to
bfloat16 (hf_bf16_kv.py), as a runtime keeping a BF16 KV cache computes them. OUT_DIR/manifest.json:
the make-tiny flags, versions, every tensor (dtype, shape) of each file of our directory that
the reference loader was given, the modules it installed decode hooks on, the checks above, and
the sizes.

Stand-ins, so that this runs without a GPU: the package imports cupy and loads its PTX decode
kernel at import time; a stand-in `cupy` module provides the kernel as a sequential CPU decoder
(it reads the same arguments the CUDA kernel gets: luts, encoded_exponent, sign_mantissa, the
output buffer, n_luts, n_bytes, n_elements, and writes the BF16 words). `pkg_resources` (only used
to find the PTX file) gets a stand-in when the installed setuptools no longer has it. transformers
5 has no `no_init_weights`, so the model is built with `from_config` (seeded) and passed as
`bfloat16_model`, an argument of the reference's API. Float32: the reference's hooks write BF16
weights; a forward pre-hook added after theirs on every Linear/Embedding widens them (exactly).
"""

import argparse
import contextlib
import ctypes
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import types

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

# make-tiny flags of the model (small: the reference-made directory is committed).
MODEL = ["--arch", "llama", "--layers", "1", "--hidden", "32", "--heads", "2", "--kv-heads", "2",
         "--intermediate", "64", "--vocab", "256", "--seed", "21", "--tie-embeddings"]
# The default pattern_dict of the Llama releases (and of `df11 compress`).
PATTERN_DICT = {
    "lm_head": [],
    "model.embed_tokens": [],
    r"model.layers.\d+": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                          "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"],
}
PROMPTS = [[1], [1, 200, 20, 133, 101, 29, 232], [1, 17, 100, 5, 255, 42, 42, 7, 0, 2, 77, 123]]


# ------------------------------------------------------------------ stand-ins for the GPU parts

_decoded = {}  # (encoded ptr, n_bytes, sign_mantissa ptr, n_elements) -> BF16 words


def _array(ptr, n, ctype=ctypes.c_uint8):
    return np.ctypeslib.as_array((ctype * n).from_address(ptr)) if n else np.zeros(0, np.uint8)


def cpu_decode(grid=None, block=None, shared_mem=None, args=()):
    """The reference kernel's job, done sequentially: every exponent code from the start of the
    stream through the LUT rows (entry >= 240: continue in row 256 - entry with the next byte),
    advancing by the code length in the last LUT row; BF16 = sign/mantissa byte + exponent."""
    luts_p, enc_p, sm_p, _positions_p, _gaps_p, out_p, n_luts, n_bytes, n_elements = args
    key = (enc_p, n_bytes, sm_p, n_elements)
    if key not in _decoded:
        luts = _array(luts_p, n_luts * 256).reshape(n_luts, 256).tolist()
        lengths = luts[-1]
        enc = np.concatenate([_array(enc_p, n_bytes), np.zeros(8, np.uint8)]).astype(np.uint32)
        bit = np.arange(8 * n_bytes + 32)
        pair = (enc[bit >> 3] << 8) | enc[(bit >> 3) + 1]
        byte_at = ((pair << (bit & 7).astype(np.uint32)) >> 8 & 0xFF).tolist()
        exps = np.empty(n_elements, np.uint16)
        pos = 0
        for i in range(n_elements):
            p = pos
            v = luts[0][byte_at[p]]
            while v >= 240:
                p += 8
                v = luts[256 - v][byte_at[p]]
            exps[i] = v
            pos += lengths[v]
        if pos > 8 * n_bytes:
            raise RuntimeError(f"decode ran past the stream: {pos} > {8 * n_bytes} bits")
        sm = _array(sm_p, n_elements).astype(np.uint16)
        _decoded[key] = ((sm & 0x80) << 8) | (exps << 7) | (sm & 0x7F)
    words = np.ascontiguousarray(_decoded[key], dtype=np.uint16)
    ctypes.memmove(out_p, words.ctypes.data, words.nbytes)


def install_stand_ins():
    cupy = types.ModuleType("cupy")

    class RawModule:
        def __init__(self, path=None, **_):
            self.path = path

        def get_function(self, name):
            assert name == "decode", name
            return cpu_decode

    cupy.RawModule = RawModule
    cupy.cuda = types.SimpleNamespace(Device=lambda index=None: contextlib.nullcontext())
    sys.modules["cupy"] = cupy
    if importlib.util.find_spec("pkg_resources") is None:
        pkg_resources = types.ModuleType("pkg_resources")

        def resource_filename(package, name):
            return os.path.join(os.path.dirname(importlib.util.find_spec(package).origin), name)

        pkg_resources.resource_filename = resource_filename
        sys.modules["pkg_resources"] = pkg_resources


install_stand_ins()
import dfloat11  # noqa: E402  (the real package, with the stand-ins above)
from hf_bf16_kv import load_f32_bf16kv  # noqa: E402
import safetensors  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402


# ------------------------------------------------------------------ helpers

def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def safetensors_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return {k: {"dtype": v["dtype"], "shape": v["shape"]} for k, v in sorted(header.items())}


@contextlib.contextmanager
def silenced():
    """Discard what the reference prints, also through streams bound before redirection
    (dahuffman's print_code_table writes to the sys.stdout it saw at import)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def reference_load(model_dir):
    """The reference loader on model_dir; returns the model (float32 forward) and the modules
    it installed a decode hook on."""
    torch.manual_seed(1234)  # the values a module keeps when no file fills it
    config = AutoConfig.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16,
                                             attn_implementation="eager")
    model.tie_weights()
    model.eval()
    with silenced():
        model = dfloat11.DFloat11Model.from_pretrained(model_dir, device="cpu",
                                                       bfloat16_model=model)
    hooked = sorted(name for name, m in model.named_modules() if hasattr(m, "encoded_exponent"))
    model.float()

    def widen(module, _):
        w = getattr(module, "weight", None)
        if w is not None and w.dtype == torch.bfloat16:
            module.weight = w.float()

    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
            m.register_forward_pre_hook(widen)
    return model, hooked


def logits_of(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids]), use_cache=False).logits[0].float().contiguous()


def dir_bytes(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".safetensors"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("df11")
    ap.add_argument("out_dir")
    ap.add_argument("--work", help="directory for the models (default: a temp dir, removed)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    tmp = None
    work = args.work
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="df11-tied-interop-")
        work = tmp.name
    bf16_dir = os.path.join(work, "bf16")
    ours_dir = os.path.join(work, "ours_df11")
    before_dir = os.path.join(work, "ours_df11_without_lm_head")
    ref_dir = os.path.join(args.out_dir, "reference_df11")
    for d in (bf16_dir, ours_dir, before_dir, ref_dir):
        if os.path.exists(d):
            raise SystemExit(f"{d} exists")
    os.makedirs(args.out_dir, exist_ok=True)

    subprocess.run([args.df11, "-q", "make-tiny", *MODEL, bf16_dir], check=True,
                   stdout=subprocess.DEVNULL)
    with open(os.path.join(bf16_dir, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["tie_word_embeddings"] is True

    # transformers' float32 model from the BF16 directory: the expected logits.
    m32 = AutoModelForCausalLM.from_pretrained(bf16_dir, dtype=torch.float32,
                                               attn_implementation="eager").eval()
    assert m32.lm_head.weight.data_ptr() == m32.model.embed_tokens.weight.data_ptr()
    expected = [logits_of(m32, ids) for ids in PROMPTS]

    # 1. The reference encoder on the tied model.
    m16 = AutoModelForCausalLM.from_pretrained(bf16_dir, dtype=torch.bfloat16).eval()
    with silenced():
        dfloat11.compress_model(m16, dict(PATTERN_DICT), ref_dir, save_single_file=False,
                                check_correctness=False)
    for fn in os.listdir(ref_dir):
        os.chmod(os.path.join(ref_dir, fn), 0o644)
    ref_files = {fn: safetensors_header(os.path.join(ref_dir, fn))
                 for fn in sorted(os.listdir(ref_dir)) if fn.endswith(".safetensors")}
    assert "lm_head.safetensors" in ref_files, sorted(ref_files)

    # 2. Our encoder, and the reference loader on its output.
    subprocess.run([args.df11, "-q", "compress", bf16_dir, ours_dir], check=True,
                   stdout=subprocess.DEVNULL)
    shutil.copytree(ours_dir, before_dir)
    os.remove(os.path.join(before_dir, "lm_head.safetensors"))

    checks = {}
    tensors = {}
    loaded = {}
    for name, d in (("ours", ours_dir), ("reference", ref_dir), ("ours_without_lm_head", before_dir)):
        model, hooked = reference_load(d)
        with silenced():  # the decode hook reports its buffer allocations
            got = [logits_of(model, ids) for ids in PROMPTS]
        diff = max(float((g - e).abs().max()) for g, e in zip(got, expected))
        equal = all(torch.equal(g, e) for g, e in zip(got, expected))
        checks[name] = {"decode_hooks_on": hooked, "logits_equal_transformers_f32": equal,
                        "max_abs_logit_difference": diff}
        loaded[name] = got
        print(f"  reference loader on {name}: hooks on {hooked}; logits equal: {equal}"
              f" (max |diff| {diff:.3g})", file=sys.stderr)
    assert checks["ours"]["logits_equal_transformers_f32"], checks["ours"]
    assert checks["reference"]["logits_equal_transformers_f32"], checks["reference"]
    assert not checks["ours_without_lm_head"]["logits_equal_transformers_f32"]
    assert "lm_head" in checks["ours"]["decode_hooks_on"]

    # The same with keys and values rounded to BF16 (a BF16 KV cache, as the CPU keeps it).
    m32kv = load_f32_bf16kv(bf16_dir)
    for i, ids in enumerate(PROMPTS):
        tensors[f"prompt{i}.ids"] = torch.tensor(ids, dtype=torch.int32)
        tensors[f"prompt{i}.logits_f32"] = loaded["ours"][i]
        tensors[f"prompt{i}.logits_f32_bf16kv"] = logits_of(m32kv, ids)
    save_file(tensors, os.path.join(args.out_dir, "logits.safetensors"),
              metadata={"generator": "scripts/reference/make_tied_interop.py"})

    ours_files = {fn: safetensors_header(os.path.join(ours_dir, fn))
                  for fn in sorted(os.listdir(ours_dir)) if fn.endswith(".safetensors")}
    lm_head_bytes = os.path.getsize(os.path.join(ours_dir, "lm_head.safetensors"))
    manifest = {
        "generator": "scripts/reference/make_tied_interop.py",
        "versions": {
            "python": platform.python_version(),
            "dfloat11": importlib.metadata.version("dfloat11"),
            "dahuffman": importlib.metadata.version("dahuffman"),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "safetensors": safetensors.__version__,
            "numpy": np.__version__,
        },
        "make_tiny_flags": MODEL,
        "pattern_dict": PATTERN_DICT,
        "prompts": PROMPTS,
        "reference_df11_files": ref_files,
        "ours_df11_files": ours_files,
        "ours_df11_files_sha256": {fn: sha256(os.path.join(ours_dir, fn))
                                   for fn in sorted(os.listdir(ours_dir))},
        "reference_loader": checks,
        "sizes": {
            "bf16_weights_bytes": dir_bytes(bf16_dir),
            "ours_df11_weights_bytes": dir_bytes(ours_dir),
            "ours_lm_head_file_bytes": lm_head_bytes,
            "ours_embedding_file_bytes": os.path.getsize(
                os.path.join(ours_dir, "model_embed_tokens.safetensors")),
            "reference_df11_weights_bytes": dir_bytes(ref_dir),
        },
    }
    with open(os.path.join(args.out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    for fn in os.listdir(args.out_dir):
        if os.path.isfile(os.path.join(args.out_dir, fn)):
            os.chmod(os.path.join(args.out_dir, fn), 0o644)
    if tmp is not None:
        tmp.cleanup()
    print(f"wrote {args.out_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
