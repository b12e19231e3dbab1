"""The encoders a flagstream model is fine-tuned from: one registry behind one small protocol.

One place decides what "train on base X" means, so ``flagstream train --base``, leave-one-source-out folds and
benchmarks that retrain per fold all build the same model for the same name: a LOSO figure for me5 is only
worth reporting if its folds were trained the way the shipped me5 model was. And one place decides which base
rebuilds a saved model (:func:`base_of`, by the manifest's ``base_kind``, from this closed table: a manifest can
never make flagstream import a module it names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from flagstream.classifier.manifest import ModelDirError, ModelManifest


class EncoderBase(Protocol):
    """What the classifier needs of an encoder base (each base is a module with these names)."""

    NAME: str  # the ``--base`` name
    BASE_NAME: str  # the manifest's ``base``
    BASE_KIND: str | None  # the manifest's ``extra.base_kind`` (None: the first base, MiniLM)
    MAX_LENGTH: int  # tokens per post this base's recipe trains with
    RECIPE: dict[str, Any]  # TrainConfig fields this base's recipe sets

    def load_base(self, n_labels: int = 2, seed: int = 13) -> tuple[Any, Any]:
        """A fresh trainable ``(model, tokenizer)``."""

    def save_weights(self, model: Any, root: Path) -> None:
        """Write the trained weights into a model directory (safetensors only)."""

    def load_model(self, manifest: ModelManifest) -> tuple[Any, Any]:
        """Rebuild a saved model: ``(model, tokenizer)``, fp32, eval mode."""

    def base_files(self) -> dict[str, str]:
        """Digests of the installed base's files, recorded in the manifest and checked at load."""

    def manifest_extra(self) -> dict[str, Any]:
        """Manifest ``extra`` fields a model trained on this base carries."""


BASES = ("minilm", "me5")  # the --base names, in the order the CLI offers them (no torch import to list them)


def registry() -> dict[str, EncoderBase]:
    """``--base`` name -> base. Imported on first use: each base imports torch, which ``--help`` must not wait for."""
    from flagstream.classifier.bases import minilm
    from flagstream.classifier.bases.e5 import model as me5

    table: dict[str, EncoderBase] = {minilm.NAME: minilm, me5.NAME: me5}  # type: ignore[dict-item]
    assert tuple(table) == BASES
    return table


def check(base: str) -> str:
    if base not in BASES:
        raise ValueError(f"unknown base {base!r}: use one of {', '.join(BASES)}")
    return base


def get(base: str) -> EncoderBase:
    """The encoder base called ``base`` (``--base``); raises :class:`ValueError` on an unknown name."""
    return registry()[check(base)]


def base_of(manifest: ModelManifest) -> EncoderBase:
    """The encoder base a saved model was trained on, by its manifest's ``base_kind``.

    Raises :class:`~flagstream.classifier.manifest.ModelDirError` on a kind no registered base has.
    """
    kind = manifest.extra.get("base_kind")
    for base in registry().values():
        if base.BASE_KIND == kind:
            return base
    known = ", ".join(b.BASE_KIND for b in registry().values() if b.BASE_KIND)
    raise ModelDirError(f"{manifest.root}: unknown base_kind {kind!r}; known: {known}")


def recipe(base: str) -> dict[str, Any]:
    """The shipped recipe's own defaults for ``base`` (MiniLM's are ``TrainConfig``'s, so none)."""
    return dict(get(base).RECIPE)


def load_base(base: str, n_labels: int, seed: int) -> tuple[Any, Any]:
    """A fresh trainable model for ``base`` (me5: LoRA on the top layers, :mod:`flagstream.classifier.bases.e5.model`) and its tokenizer."""
    return get(base).load_base(n_labels, seed)


def train_config(base: str, **overrides: Any) -> Any:
    """``TrainConfig`` with ``base``'s recipe applied, then ``overrides`` (``None`` values ignored)."""
    from flagstream.classifier.training.train import TrainConfig

    cfg = TrainConfig()
    known = set(cfg.as_dict())
    for key, value in {**recipe(base), **{k: v for k, v in overrides.items() if v is not None}}.items():
        if key in known:
            setattr(cfg, key, value)
    return cfg
