"""Training smoke: a few steps on a tiny synthetic set through the real pipeline (seconds, not minutes)."""

from __future__ import annotations

import numpy as np
import pytest

datasets = pytest.importorskip("datasets")
torch = pytest.importorskip("torch")

from flagstream.classifier.inference.scoring import load_scorer  # noqa: E402
from flagstream.classifier.training.train import TrainConfig, Trainer, make_batches  # noqa: E402


def _tiny() -> "datasets.Dataset":
    rows = []
    for i in range(48):
        kind = i % 3
        text = ["glory to the fighters, join the fight", "those people are vermin", "weather is nice today"][kind]
        rows.append({"text": f"{text} {i}", "propaganda": int(kind == 0), "sectarian": int(kind == 1) if i % 5 else None,
                     "source": "synthetic", "lang": "en", "group": f"g{i}", "weight": 1.0, "hand": 0, "meta": "",
                     "weak": 0, "split": "val" if i % 4 == 0 else "train"})
    return datasets.Dataset.from_list(rows)


def test_fit_and_save_writes_a_loadable_verified_model(tmp_path):
    from flagstream.classifier.training.fit import fit_and_save

    cfg = TrainConfig(max_steps=3, batch_size=8, max_length=16, checkpoint_every=2)
    summary = fit_and_save(_tiny(), cfg, tmp_path / "model", tmp_path / "run", progress=False, version="0.0.1")
    assert summary["training"]["steps"] == 3
    from flagstream.classifier.inference.runtime import native_bf16

    # bf16 autocast only where the CPU has it: emulated bf16 trains several times slower than fp32
    assert summary["training"]["precision"] == ("bf16 autocast" if native_bf16() else "fp32")
    assert (tmp_path / "run" / "checkpoint.safetensors").exists()
    scorer = load_scorer(tmp_path / "model")
    assert scorer.info.ref == "flagstream-minilm@0.0.1"
    probs = scorer.score(["join the fight", "nice weather", ""])
    assert probs.shape == (3, 2) and np.isfinite(probs).all()
    size = sum(p.stat().st_size for p in (tmp_path / "model").iterdir())
    assert size < 25 * 1024 * 1024


def test_resume_continues_from_the_checkpoint(tmp_path):
    from flagstream.classifier.data.corpus import targets
    from flagstream.classifier.bases.minilm import load_base

    ds = _tiny()
    cfg = TrainConfig(max_steps=4, batch_size=8, max_length=16, checkpoint_every=2)
    model, tok = load_base()
    first = Trainer(model, tok, TrainConfig(**{**cfg.as_dict(), "max_steps": 2}), tmp_path)
    # a run killed after 2 of 4 steps leaves a checkpoint at step 2
    first.config.max_steps = 4
    first.config.time_budget_s = 1e-9
    out = first.fit(list(ds["text"]), targets(ds), progress=False)
    assert out["stopped_early"] and out["steps"] == 1
    model2, tok2 = load_base()
    again = Trainer(model2, tok2, cfg, tmp_path).fit(list(ds["text"]), targets(ds), resume=True, progress=False)
    assert again["resumed"] and again["steps"] == 4
    # the checkpoint is safetensors (no pickle) and resuming lands where an uninterrupted run does
    from safetensors import safe_open

    with safe_open(str(tmp_path / "checkpoint.safetensors"), framework="pt") as f:
        assert f.metadata()["step"] == "4" and any(k.startswith("optim.") for k in f.keys())
    model3, tok3 = load_base()
    Trainer(model3, tok3, cfg, None).fit(list(ds["text"]), targets(ds), progress=False)
    for (name, a), b in zip(model2.head.state_dict().items(), model3.head.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), name


def test_batches_are_deterministic_and_cover_every_row():
    lengths = list(np.random.default_rng(0).integers(1, 60, 500))
    a = make_batches(lengths, 32, seed=1, epoch=0)
    assert a == make_batches(lengths, 32, seed=1, epoch=0)
    assert a != make_batches(lengths, 32, seed=1, epoch=1)
    assert sorted(i for b in a for i in b) == list(range(500))


def test_lp_ft_schedule_fits_the_head_before_the_encoder_moves():
    from flagstream.classifier.training.train import lr_lambdas

    body, body_nd, head = lr_lambdas(1000, 0.1, 100)
    assert body is body_nd
    assert all(body(s) == 0.0 for s in range(100))  # probe phase: encoder frozen by a zero learning rate
    assert 0 < body(100) < body(150) <= 1.0 and body(190) == 1.0 and body(999) < 0.02
    assert 0 < head(0) < head(99) == 1.0 and head(999) < 0.01  # the head is trained throughout
    no_probe = lr_lambdas(1000, 0.1, 0)
    assert no_probe[0](0) > 0 and no_probe[0](500) == no_probe[2](500)


def test_another_training_seed_keeps_the_data_split(monkeypatch, tmp_path):
    """--seed changes initialisation and batch order, never which rows are held out (else the test set leaks)."""
    from flagstream.classifier.data import corpus as classifier_data
    from flagstream.classifier.data.splits import SPLIT_SEED
    from flagstream.cli import build_parser
    from flagstream.commands import train as train_cmd

    seen = {}

    class Stop(Exception):
        pass

    def fake_load_corpus(data_dir, sources=None, seed=SPLIT_SEED, **_):
        seen["seed"] = seed
        raise Stop

    monkeypatch.setattr(classifier_data, "load_corpus", fake_load_corpus)
    args = build_parser().parse_args(["train", "--seed", "7", "--data-dir", str(tmp_path), "--output", str(tmp_path / "m")])
    with pytest.raises(Stop):
        train_cmd.run(args)
    assert seen["seed"] == SPLIT_SEED == 13


def test_each_base_gets_its_own_recipe_defaults_and_flags_still_win():
    """`flagstream train --base me5` alone reproduces the shipped me5 recipe; MiniLM keeps TrainConfig's."""
    import argparse

    from flagstream.classifier.bases.e5.model import RECIPE
    from flagstream.classifier.training.train import TrainConfig
    from flagstream.commands.train import add_parser, train_config_from_args

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    me5 = train_config_from_args(parser.parse_args(["train", "--base", "me5"]))
    assert (me5.max_steps, me5.max_length, me5.lr) == (RECIPE["max_steps"], RECIPE["max_length"], RECIPE["lr"])
    assert me5.time_budget_s == RECIPE["time_budget_min"] * 60
    minilm = train_config_from_args(parser.parse_args(["train"]))
    d = TrainConfig()
    assert (minilm.max_steps, minilm.max_length, minilm.lr, minilm.time_budget_s) == (d.max_steps, d.max_length,
                                                                                      d.lr, 40 * 60)
    own = train_config_from_args(parser.parse_args(["train", "--base", "me5", "--max-steps", "7", "--time-budget",
                                                    "0", "--max-length", "32"]))
    assert (own.max_steps, own.max_length, own.time_budget_s) == (7, 32, d.time_budget_s)


def test_loso_folds_train_with_the_same_recipe_as_the_shipped_model():
    """A LOSO figure for me5 is only worth reporting if its folds were trained the shipped way (flagstream.classifier.bases.registry)."""
    from flagstream.classifier.bases import registry as bases
    from flagstream.classifier.bases.e5.model import RECIPE
    from flagstream.classifier.training.train import TrainConfig

    fold = bases.train_config("me5", max_steps=400, seed=13, lr=None)
    assert (fold.max_steps, fold.max_length, fold.lr) == (400, RECIPE["max_length"], RECIPE["lr"])  # None = keep
    assert bases.train_config("minilm").as_dict() == TrainConfig().as_dict()
    with pytest.raises(ValueError, match="unknown base 'bert'"):
        bases.recipe("bert")
