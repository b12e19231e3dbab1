"""Audit sampling (streaming/loop/audit.py): known probabilities, reproducible draws, unbiased weighted counts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flagstream.config import load_settings
from flagstream.streaming.loop.audit import AuditPolicy, audit_fields, inclusion_probability, mark_audit, uniform, weight_of

THR = {"propaganda": 0.6, "sectarian": 0.4}


def stream(n: int, seed: int):
    """A synthetic score stream: mostly benign, a tail near and above the thresholds; 3% positives."""
    rng = np.random.default_rng(seed)
    prop = rng.beta(0.6, 6, n)
    sect = rng.beta(0.6, 5, n)
    pos = rng.random(n) < np.clip(0.02 + sect, 0, 1) * 0.1
    return [(f"post-{seed}-{i}", {"propaganda": float(prop[i]), "sectarian": float(sect[i])}, bool(pos[i]))
            for i in range(n)]


def test_probabilities_follow_the_distance_below_the_thresholds():
    pol = AuditPolicy(rate=0.01, near_rate=0.1, near_band=0.5)
    assert inclusion_probability({"propaganda": 0.7, "sectarian": 0.0}, THR, pol) == 1.0  # flagged
    assert inclusion_probability({"propaganda": 0.1, "sectarian": 0.25}, THR, pol) == 0.1  # 0.25 >= 0.5 * 0.4
    assert inclusion_probability({"propaganda": 0.1, "sectarian": 0.1}, THR, pol) == 0.01
    assert audit_fields("x", {"propaganda": 0.9, "sectarian": 0.0}, THR, pol) is None  # flagged: never audit
    assert audit_fields("x", {"propaganda": 0.1, "sectarian": 0.1}, THR, AuditPolicy(rate=0, near_rate=0)) is None
    with pytest.raises(ValueError, match="rate"):
        AuditPolicy(rate=1.5)


def test_the_draw_is_reproducible_per_post_and_keyed_by_the_seed():
    assert uniform("p-1", "a") == uniform("p-1", "a")
    assert uniform("p-1", "a") != uniform("p-1", "b")
    u = np.array([uniform(f"id-{i}", "k") for i in range(20_000)])
    assert abs(u.mean() - 0.5) < 0.01 and 0 <= u.min() and u.max() < 1  # uniform


def test_horvitz_thompson_counts_are_unbiased_and_the_rate_is_small():
    """Sum of sampling weights over audited posts estimates the number of unflagged posts (and of
    unflagged positives), per stratum; over 12 streams the mean error is within 2% and each stream's
    error within 4 standard errors. About 1-2% of unflagged posts are sent (default policy)."""
    pol = AuditPolicy()
    rel_errs, rel_pos, rates = [], [], []
    for seed in range(12):
        posts = stream(20_000, seed)
        pol_s = AuditPolicy(rate=pol.rate, near_rate=pol.near_rate, near_band=pol.near_band, seed=f"s{seed}")
        unflagged = [(i, sc, y) for i, sc, y in posts if inclusion_probability(sc, THR, pol_s) < 1]
        picks = [(audit_fields(i, sc, THR, pol_s), y, inclusion_probability(sc, THR, pol_s)) for i, sc, y in unflagged]
        chosen = [(f, y, p) for f, y, p in picks if f is not None]
        ht = sum(f["sampling_weight"] for f, _, _ in chosen)
        se = np.sqrt(sum((1 - p) / p ** 2 for _, _, p in picks))  # HT variance of a count, Poisson sampling
        assert abs(ht - len(unflagged)) < 4 * se
        rel_errs.append(ht / len(unflagged) - 1)
        true_pos = sum(y for _, _, y in unflagged)
        rel_pos.append(sum(f["sampling_weight"] for f, y, _ in chosen if y) / true_pos - 1)
        rates.append(len(chosen) / len(unflagged))
        assert all(f["sampling_probability"] == p and f["sampling_weight"] == pytest.approx(1 / p) for f, _, p in chosen)
    assert abs(np.mean(rel_errs)) < 0.02, np.mean(rel_errs)
    assert abs(np.mean(rel_pos)) < 0.05, np.mean(rel_pos)
    assert 0.01 <= np.mean(rates) <= 0.03, np.mean(rates)


def test_marked_record_and_weight_read_back():
    value = json.dumps({"id": "p", "labels": []}).encode()
    v2, h2 = mark_audit(value, [("content-type", b"application/json")],
                        {"audit": True, "sampling_probability": 0.1, "sampling_weight": 10.0})
    body = json.loads(v2)
    assert weight_of(body) == (True, 10.0) and dict(h2)["flagstream.audit"] == b"10.0"
    assert weight_of({"id": "q", "labels": ["sectarian"]}) == (False, 1.0)
    with pytest.raises(ValueError):
        weight_of({"audit": True, "sampling_weight": 0.5})


def test_config_keys(monkeypatch):
    monkeypatch.setenv("FLAGSTREAM_AUDIT_RATE", "0.02")
    s = load_settings()
    assert s.audit_rate == 0.02 and s.audit_near_rate == 0.10 and AuditPolicy.from_settings(s).rate == 0.02
    monkeypatch.setenv("FLAGSTREAM_AUDIT_RATE", "2")
    with pytest.raises(Exception, match="audit_rate"):
        load_settings()


def test_console_offers_every_label_of_an_audit_item():
    """The review console's state (records folded in as plain data): an audit item is decided on every label."""
    from types import SimpleNamespace

    from flagstream.streaming.ops.console.state import ReviewState

    s = load_settings(None, {"review_topic": "rv", "decisions_topic": "dc"}, environ={})
    state = ReviewState(s, consumer=None, producer=None)
    audit = {"id": "a1", "text": "t", "labels": [], "scores": {"propaganda": 0.1, "sectarian": 0.3},
             "thresholds": THR, "audit": True, "sampling_probability": 0.1, "sampling_weight": 10.0}
    flagged = {"id": "f1", "text": "t", "labels": ["sectarian"], "scores": {"propaganda": 0.1, "sectarian": 0.9},
               "thresholds": THR}
    for i, body in enumerate((audit, flagged)):
        state.apply(SimpleNamespace(topic="rv", partition=0, offset=i, value=json.dumps(body).encode()))
    items = {g.lead.record["id"]: state.item(g.key) for g in state.groups()}
    assert items["a1"]["audit"] is True and items["a1"]["decide"] == ["propaganda", "sectarian"]
    assert items["f1"]["audit"] is False and items["f1"]["decide"] == ["sectarian"]
