"""The linear baseline: TF-IDF word and character n-grams + logistic regression, one per label.

It is the yardstick every transformer evaluation is printed beside, the small real model the streaming
tests train in seconds, and the optional cheap first stage of a cascade. It is stored without pickle:
vocabularies and IDF weights as JSON/safetensors, coefficients as safetensors, so a model directory
can be verified and loaded without executing anything.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from flagstream.classifier.interface import ModelInfo, probabilities
from flagstream.classifier.labels import LABELS
from flagstream.classifier.manifest import ModelDirError, ModelManifest, write_manifest
from flagstream.classifier.normalize import normalize_text

WORD_PARAMS = dict(analyzer="word", ngram_range=(1, 2), min_df=2, max_features=200_000, sublinear_tf=True, lowercase=True)
CHAR_PARAMS = dict(analyzer="char_wb", ngram_range=(2, 5), min_df=3, max_features=300_000, sublinear_tf=True, lowercase=True)


class LinearModel:
    """Two vectorisers and one logistic regression per label."""

    def __init__(self, word: TfidfVectorizer, char: TfidfVectorizer, coef: np.ndarray, intercept: np.ndarray,
                 labels: Sequence[str] = LABELS) -> None:
        self.word, self.char = word, char
        self.coef = coef.astype(np.float32)  # (labels, features)
        self.intercept = intercept.astype(np.float32)  # (labels,)
        self.labels = tuple(labels)

    # ---------------------------------------------------------------------------------
    @classmethod
    def fit(cls, texts: Sequence[str], targets: np.ndarray, labels: Sequence[str] = LABELS,
            c: float = 4.0, seed: int = 13, class_weight: str | None = "balanced",
            sample_weight: np.ndarray | None = None) -> "LinearModel":
        """``targets``: float array (n, labels) with 0/1 or NaN where a source says nothing."""
        norm = [normalize_text(t) for t in texts]
        word = TfidfVectorizer(**WORD_PARAMS)
        char = TfidfVectorizer(**CHAR_PARAMS)
        x = sparse.hstack([word.fit_transform(norm), char.fit_transform(norm)]).tocsr()
        coefs, inters = [], []
        for j, _ in enumerate(labels):
            known = ~np.isnan(targets[:, j])
            y = targets[known, j].astype(int)
            if len(np.unique(y)) < 2:
                raise ValueError(f"label {labels[j]!r} needs both positives and negatives to train")
            lr = LogisticRegression(C=c, max_iter=2000, class_weight=class_weight, random_state=seed, solver="liblinear")
            lr.fit(x[known], y, sample_weight=None if sample_weight is None else sample_weight[known])
            coefs.append(lr.coef_[0])
            inters.append(lr.intercept_[0])
        return cls(word, char, np.vstack(coefs), np.array(inters), labels)

    def features(self, texts: Sequence[str]) -> sparse.csr_matrix:
        norm = [normalize_text(t) for t in texts]
        return sparse.hstack([self.word.transform(norm), self.char.transform(norm)]).tocsr()

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        z = self.features(texts) @ self.coef.T + self.intercept
        return probabilities(np.asarray(z)).astype(np.float32)

    # ---------------------------------------------------------------------------------
    def save(self, root: Path, name: str, version: str, thresholds: dict[str, float], extra: dict | None = None) -> ModelManifest:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        for prefix, vec in (("word", self.word), ("char", self.char)):
            vocab = {k: int(v) for k, v in vec.vocabulary_.items()}
            (root / f"{prefix}_vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        save_file(
            {"coef": self.coef, "intercept": self.intercept,
             "word_idf": self.word.idf_.astype(np.float64), "char_idf": self.char.idf_.astype(np.float64)},
            str(root / "linear.safetensors"),
        )
        manifest = ModelManifest(name=name, version=version, kind="linear", labels=list(self.labels),
                                 thresholds={k: float(v) for k, v in thresholds.items()}, extra=extra or {})
        write_manifest(root, manifest)
        return manifest

    @classmethod
    def load(cls, manifest: ModelManifest) -> "LinearModel":
        try:
            tensors = load_file(str(manifest.path("linear.safetensors")))
            vecs = []
            for prefix, params in (("word", WORD_PARAMS), ("char", CHAR_PARAMS)):
                vec = TfidfVectorizer(**params)
                vec.vocabulary_ = json.loads(manifest.path(f"{prefix}_vocab.json").read_text(encoding="utf-8"))
                vec.idf_ = tensors[f"{prefix}_idf"]
                vecs.append(vec)
        except (OSError, KeyError, json.JSONDecodeError) as exc:
            raise ModelDirError(f"{manifest.root}: incomplete linear model ({exc})") from None
        return cls(vecs[0], vecs[1], tensors["coef"], tensors["intercept"], manifest.labels)


class LinearScorer:
    """:class:`flagstream.classifier.interface.Scorer` over a :class:`LinearModel`."""

    def __init__(self, model: LinearModel, info: ModelInfo) -> None:
        self.model, self.info = model, info

    @classmethod
    def load(cls, manifest: ModelManifest, info: ModelInfo) -> "LinearScorer":
        return cls(LinearModel.load(manifest), info)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.predict_proba(texts)
