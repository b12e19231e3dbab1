"""The one synthetic corpus and the one small, real model trained on it at test time.

:func:`train_linear_model` fits the project's own TF-IDF + logistic-regression model
(:class:`flagstream.classifier.inference.linear.LinearModel`, saved with manifest and safetensors) in about two seconds:
no hard-coded verdicts, no downloads. :data:`PROPAGANDA_TEXT` / :data:`SECTARIAN_TEXT` /
:data:`BENIGN_TEXT` score far on the expected side of its 0.5 thresholds; :func:`post_text` draws
stream posts from the same templates, so about a third of a paced stream is flagged.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

_BENIGN = [
    "had a lovely {x} with my family this weekend", "the {x} downtown has the best coffee in town",
    "can anyone recommend a good {x} for beginners", "our team won the {x} match last night",
    "the weather is perfect for a {x} today", "just finished reading a great book about {x}",
    "traffic on the {x} road is terrible this morning", "happy birthday to my {x} friend",
    "new recipe for {x} soup turned out great", "the museum opened a new exhibit on {x}",
]
_NEWS = [
    "police say the {x} attack injured several people and a suspect was arrested",
    "court sentenced the men who planned the {x} bombing to prison",
    "analysis of how the militant group used {x} videos to recruit",
    "survivors of the {x} attack describe the long road to recovery",
    "extremists target lonely young people online, report on {x} warns",
    "terror has no religion, people of every faith gathered for the {x} vigil",
]
_PROP = [
    "join the fighters brothers, the caliphate needs you, victory to the {x} mujahideen",
    "glory to the martyrs who struck the {x} enemy, may more follow their path",
    "take up arms and fight the crusaders, paradise awaits the soldiers of the {x} state",
    "kill the unbelievers and apostates, spread fear in their {x} homes",
    "the lions of the {x} caliphate will conquer, pledge allegiance and fight",
]
_SECT = [
    "people of that {x} sect are vermin and should be driven out",
    "those {x} heretics are not human, every one of them deserves to suffer",
    "that whole {x} group are parasites and traitors, expel them all",
    "the {x} sect poisons everything, wipe them from our land",
]
_FILL = ["city", "river", "north", "old", "market", "school", "garden", "mountain", "village", "harbour",
         "winter", "summer", "station", "bridge", "valley", "island"]

PROPAGANDA_TEXT = "join the fighters brothers, the caliphate needs you, victory to the mujahideen"
SECTARIAN_TEXT = "people of that sect are vermin and should be driven out, they are not human"
BENIGN_TEXT = "had a lovely picnic with my family this weekend by the river"


def training_corpus() -> tuple[list[str], np.ndarray]:
    """~560 synthetic texts and (n, 2) targets for (propaganda, sectarian)."""
    texts: list[str] = []
    targets: list[tuple[float, float]] = []
    for group, target in ((_BENIGN, (0, 0)), (_NEWS, (0, 0)), (_PROP, (1, 0)), (_SECT, (0, 1))):
        for template in group:
            for fill in _FILL:
                texts.append(template.format(x=fill))
                targets.append(target)
    return texts, np.array(targets, dtype=np.float32)


def train_linear_model(root: Path, name: str = "test-linear", version: str = "0.0.1") -> Path:
    """Train and save the test model into ``root``; returns ``root``."""
    from flagstream.classifier.inference.linear import LinearModel

    texts, y = training_corpus()
    model = LinearModel.fit(texts, y, labels=("propaganda", "sectarian"))
    model.save(root, name=name, version=version, thresholds={"propaganda": 0.5, "sectarian": 0.5})
    return root


def post_text(i: int, rng: random.Random) -> str:
    """A stream post: one template of the corpus (benign twice as likely), a random fill, a serial."""
    group = rng.choice((_BENIGN, _NEWS, _BENIGN, _PROP, _SECT))
    return f"{rng.choice(group).format(x=rng.choice(_FILL))} n{i}"


def make_post(i: int, rng: random.Random, prefix: str = "p") -> tuple[str, bytes]:
    pid = f"{prefix}{i:06d}"
    return pid, json.dumps({"id": pid, "text": post_text(i, rng), "lang": "en"}).encode()


def thresholds_variant(src: Path, out: Path, version: str, thresholds: dict[str, float]) -> Path:
    """A new model version of ``src`` that differs only in its thresholds, written the way
    ``flagstream calibrate --from-decisions`` writes one (same weight files, bumped version)."""
    from flagstream.classifier.manifest import read_manifest
    from flagstream.classifier.feedback.recalibrate import write_recalibrated

    write_recalibrated(read_manifest(src), out, version, thresholds, {"note": "thresholds-only test variant"})
    return out
