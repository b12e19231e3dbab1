"""The encoders a flagstream model is fine-tuned from, and each one's recipe defaults.

One place decides what "train on base X" means, so ``flagstream train --base``, leave-one-source-out folds and
benchmarks that retrain per fold all build the same model for the same name: a LOSO figure for me5 is only
worth reporting if its folds were trained the way the shipped me5 model was.
"""

from __future__ import annotations

from typing import Any

BASES = ("minilm", "me5")


def check(base: str) -> str:
    if base not in BASES:
        raise ValueError(f"unknown base {base!r}: use one of {', '.join(BASES)}")
    return base


def recipe(base: str) -> dict[str, Any]:
    """The shipped recipe's own defaults for ``base`` (MiniLM's are ``TrainConfig``'s, so none)."""
    if check(base) == "me5":
        from flagstream.classifier.bases.e5.model import RECIPE

        return dict(RECIPE)
    return {}


def load_base(base: str, n_labels: int, seed: int) -> tuple[Any, Any]:
    """A fresh trainable model for ``base`` (me5: LoRA on the top layers, see flagstream.classifier.bases.e5.model) and its tokenizer."""
    if check(base) == "me5":
        from flagstream.classifier.bases.e5.model import load_base as load
    else:
        from flagstream.classifier.inference.transformer import load_base as load
    return load(n_labels, seed)


def train_config(base: str, **overrides: Any) -> Any:
    """``TrainConfig`` with ``base``'s recipe applied, then ``overrides`` (``None`` values ignored)."""
    from flagstream.classifier.training.train import TrainConfig

    cfg = TrainConfig()
    known = set(cfg.as_dict())
    for key, value in {**recipe(base), **{k: v for k, v in overrides.items() if v is not None}}.items():
        if key in known:
            setattr(cfg, key, value)
    return cfg
