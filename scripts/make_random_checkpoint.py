#!/usr/bin/env python3
"""Write a randomly initialised SiglipModel as a Hugging Face model folder.

The folder has the exact layout and tensor names of google/medsiglip-448 (config.json,
model.safetensors, tokenizer.json, tokenizer_config.json, preprocessor_config.json), so the Rust
loader, benchmarks and end-to-end smoke tests can run without downloading the real 3.5 GB
checkpoint. The weights are random (N(0, 0.02^2) for matrices, embeddings and small biases,
LayerNorm 1/0, logit_scale log(10), logit_bias -10), so the outputs mean nothing.

Usage (no network or HF hub needed):
    VENV=$(scripts/setup.sh)
    "$VENV/bin/python" scripts/make_random_checkpoint.py --preset medsiglip-448 --out /tmp/medsiglip-random
    "$VENV/bin/python" scripts/make_random_checkpoint.py --preset tiny --out /tmp/siglip-tiny --dtype bfloat16

Presets:
    medsiglip-448  the MedSigLIP-448 config (docs: siglip-spec.md section 1.1): 2 x 27 layers of
                   width 1152, 878,300,338 parameters, 888 tensors, ~3.51 GB in float32.
    small          4 x 64-wide vision layers, patch 8, image 128: the default model's backbone.
    tiny           the `tiny_a` fixture shape (tests/fixtures/siglip), vocab = tokenizer's.

The tokenizer (default: tests/fixtures/siglip/tokenizer.json, a 496-piece SigLIP-like Unigram)
is copied as is. Its vocabulary is smaller than the medsiglip preset's 32000 rows, which is
fine: every id it produces is in range for the embedding table.

Initialisation skips torch's and transformers' initialisers (`no_init_weights`), allocates the
parameters directly in the requested dtype, and fills them with one in-place `normal_` each,
so the full preset takes well under a minute on two cores.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import contextlib
import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch
import transformers
from safetensors import safe_open
from tokenizers import Tokenizer
from transformers import SiglipConfig, SiglipModel

try:  # transformers >= 5
    from transformers.initialization import no_init_weights
except ImportError:  # transformers 4.x
    from transformers.modeling_utils import no_init_weights

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TOKENIZER = REPO / "tests" / "fixtures" / "siglip" / "tokenizer.json"

_COMMON = dict(hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, attention_dropout=0.0)
PRESETS = {
    "medsiglip-448": dict(
        vision=dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                    num_channels=3, patch_size=14, image_size=448, **_COMMON),
        text=dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                  vocab_size=32000, max_position_embeddings=64, projection_size=1152, **_COMMON),
    ),
    # The backbone of the shipped default model (models/default): trained from scratch on simulated data.
    "small": dict(
        vision=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                    num_channels=3, patch_size=8, image_size=128, **_COMMON),
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  vocab_size=None, max_position_embeddings=64, projection_size=64, **_COMMON),
    ),
    "tiny": dict(
        vision=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                    num_channels=3, patch_size=4, image_size=16, **_COMMON),
        text=dict(hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
                  vocab_size=None, max_position_embeddings=64, projection_size=32, **_COMMON),
    ),
}

# SigLIP's tokenizer_config.json values, with a fast class that transformers 4.x and 5.x load.
TOKENIZER_CONFIG = {
    "tokenizer_class": "PreTrainedTokenizerFast",
    "model_max_length": 64,
    "do_lower_case": True,
    "eos_token": "</s>",
    "pad_token": "</s>",
    "unk_token": "<unk>",
    "model_input_names": ["input_ids"],
}


def preprocessor_config(image_size):
    """medsiglip-448's preprocessor_config.json (spec section 4.1), for a given image size."""
    return {
        "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "image_processor_type": "SiglipImageProcessor", "processor_class": "SiglipProcessor",
        "resample": 3, "rescale_factor": 0.00392156862,
        "size": {"height": image_size, "width": image_size},
    }


def parse_args(argv=None):
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), required=True)
    ap.add_argument("--out", type=Path, required=True, help="output folder (created; must be empty or absent)")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER, help="tokenizer.json to copy")
    ap.add_argument("--max-shard-size", default="20GB",
                    help="save_pretrained shard size; the default keeps one model.safetensors")
    ap.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    ap.add_argument("--dct-patches", action="store_true",
                    help="patch embedding = 2-D DCT basis (needs hidden_size == patch_size**2; the small preset)")
    ap.add_argument("--image-size", type=int,
                    help="vision input size instead of the preset's (a multiple of the patch size)")
    return ap.parse_args(argv)


def make_config(preset, tokenizer_vocab, image_size=None):
    """SiglipConfig for a preset (optionally another input size); the tiny preset takes its vocab size
    from the tokenizer."""
    spec = PRESETS[preset]
    vision = dict(spec["vision"])
    if image_size is not None:
        if image_size % vision["patch_size"]:
            raise SystemExit(f"--image-size {image_size} is not a multiple of the patch size {vision['patch_size']}")
        vision["image_size"] = image_size
    text = dict(spec["text"])
    if text["vocab_size"] is None:
        text["vocab_size"] = tokenizer_vocab
    if text["vocab_size"] < tokenizer_vocab:
        raise SystemExit(f"tokenizer has {tokenizer_vocab} ids but the model only {text['vocab_size']}")
    return SiglipConfig(text_config=text, vision_config=vision)


@contextlib.contextmanager
def default_dtype(dtype):
    """Temporarily allocate new floating-point tensors in `dtype`."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


@torch.no_grad()
def dct_patch_embedding(model):
    """Sets the patch embedding to the orthonormal 2-D DCT-II basis of a patch (hidden_size must be
    patch_size^2), averaged over the replicated gray channels: tokens start as the DCT coefficients of
    their patch, whose high-frequency energy measures noise. A fixed, documented inductive bias for a
    backbone trained from scratch on few images (ViTs learn such filters slowly without pretraining)."""
    conv = model.vision_model.embeddings.patch_embedding
    out_ch, in_ch, p, _ = conv.weight.shape
    assert out_ch == p * p, "DCT patch embedding needs hidden_size == patch_size**2"
    n = torch.arange(p, dtype=torch.float64)
    basis = torch.cos(math.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * p)) * math.sqrt(2 / p)
    basis[0] /= math.sqrt(2)
    filters = torch.einsum("ui,vj->uvij", basis, basis).reshape(p * p, p, p)
    conv.weight.copy_((filters[:, None] / in_ch).expand(-1, in_ch, -1, -1).to(conv.weight.dtype))
    conv.bias.zero_()


@torch.no_grad()
def build_random_model(config, dtype, seed, dct_patches=False):
    """Allocate a SiglipModel without running any initialiser, then fill it with seeded values."""
    with no_init_weights(), default_dtype(dtype):
        model = SiglipModel(config)
    gen = torch.Generator().manual_seed(seed)
    ln_params = {id(p) for m in model.modules() if isinstance(m, torch.nn.LayerNorm) for p in m.parameters()}
    for name, p in model.named_parameters():
        if name == "logit_scale":
            p.fill_(math.log(10.0))
        elif name == "logit_bias":
            p.fill_(-10.0)
        elif id(p) in ln_params:
            p.fill_(1.0 if name.endswith("weight") else 0.0)
        else:
            p.normal_(0.0, 0.02, generator=gen)
    if dct_patches:
        dct_patch_embedding(model)
    # Non-persistent buffers are not saved, but keep the in-memory model usable.
    for name, b in model.named_buffers():
        if name.endswith("position_ids"):
            b.copy_(torch.arange(b.shape[-1]).expand_as(b))
    return model.eval()


def write_folder(model, out, tokenizer_path, image_size, max_shard_size):
    """save_pretrained (safetensors) plus tokenizer and preprocessor files."""
    model.save_pretrained(out, max_shard_size=max_shard_size)
    shutil.copyfile(tokenizer_path, out / "tokenizer.json")
    (out / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2) + "\n")
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor_config(image_size), indent=2) + "\n")


def check_folder(out, model, dtype):
    """Check tensor names, count and dtype on disk against the model (headers only)."""
    index = out / "model.safetensors.index.json"
    files = (sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists()
             else ["model.safetensors"])
    names = {}
    for f in files:
        with safe_open(str(out / f), framework="pt") as st:
            for k in st.keys():
                names[k] = st.get_slice(k).get_dtype()
    want = {k for k in model.state_dict() if not k.endswith("position_ids")}
    assert set(names) == want, sorted(set(names) ^ want)[:10]
    st_dtype = {torch.float32: "F32", torch.bfloat16: "BF16"}[dtype]
    assert all(d == st_dtype for d in names.values()), set(names.values())
    return len(names), files


def main(argv=None):
    """Build, save and check a random checkpoint."""
    args = parse_args(argv)
    dtype = getattr(torch, args.dtype)
    out = args.out
    if out.exists() and any(out.iterdir()):
        if not args.force:
            raise SystemExit(f"{out} is not empty (use --force)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    tok_vocab = Tokenizer.from_file(str(args.tokenizer)).get_vocab_size(with_added_tokens=True)
    config = make_config(args.preset, tok_vocab, args.image_size)

    t0 = time.perf_counter()
    model = build_random_model(config, dtype, args.seed, args.dct_patches)
    t1 = time.perf_counter()
    write_folder(model, out, args.tokenizer, config.vision_config.image_size, args.max_shard_size)
    t2 = time.perf_counter()
    n_tensors, files = check_folder(out, model, dtype)

    if args.preset == "tiny":  # cheap end-to-end check of the in-memory model
        ids = torch.ones(2, 64, dtype=torch.long)
        px = torch.zeros(2, 3, config.vision_config.image_size, config.vision_config.image_size, dtype=dtype)
        with torch.no_grad():
            logits = model(input_ids=ids, pixel_values=px).logits_per_image
        assert logits.shape == (2, 2) and torch.isfinite(logits).all()

    n_params = sum(p.numel() for p in model.parameters())
    size = sum((out / f).stat().st_size for f in files)
    print(f"{args.preset} ({args.dtype}, seed {args.seed}): {n_params:,} parameters, {n_tensors} tensors, "
          f"{len(files)} file(s), {size:,} bytes of safetensors")
    print(f"init {t1 - t0:.1f} s, save {t2 - t1:.1f} s -> {out}")
    print(f"tokenizer {args.tokenizer} ({tok_vocab} ids; model vocab {config.text_config.vocab_size}); "
          f"transformers {transformers.__version__}, torch {torch.__version__}")


if __name__ == "__main__":
    sys.exit(main())
