"""Known-content banks (issue 33): signatures, matching, expiry and limits, the decisions -> entries rule.

Pure tests here; the stream on a real broker is in tests/test_banks_stream.py.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from flagstream.contract.decisions import Decision
from flagstream.streaming.banks.entries import BadEntry, BankEntry, parse_entry
from flagstream.streaming.banks.index import Bank
from flagstream.streaming.banks.sync import bank_of, entries_from, new_entries

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
TEXT = "Join the fighters now, brothers. The caliphate needs your hands and your weapons. Victory is near."


def _entry(text: str, bank: str = "positive", days: float = 30.0, created: datetime = NOW, ref: str = "d1") -> BankEntry:
    return BankEntry.for_text(text, bank, ["propaganda"], {"decision_id": ref, "post_id": "p1"}, created, days)


def test_an_entry_holds_signatures_never_the_text():
    e = _entry(TEXT)
    raw = e.to_json().decode()
    assert "caliphate" not in raw and "fighters" not in raw
    assert len(e.minhash) == 64 and len(e.exact) == 64
    assert parse_entry(raw) == e


def test_reposts_match_exactly_and_edits_match_near():
    bank = Bank(similarity=0.8)
    bank.add(_entry(TEXT), NOW)
    repost = "RT @someone: " + TEXT.upper() + " https://t.example/x"
    hit = bank.match(repost, NOW)["positive"]
    assert hit.how == "exact" and hit.similarity == 1.0
    edit = TEXT.replace("brothers", "brothas")
    near = bank.match(edit, NOW)["positive"]
    assert near.how == "minhash" and 0.8 <= near.similarity < 1.0
    assert near.as_dict()["decision"] == {"decision_id": "d1", "post_id": "p1"}
    assert bank.match("had a lovely picnic with my family this weekend by the river", NOW) == {}


def test_tombstones_expiry_and_the_entry_limit():
    bank = Bank(max_entries=2, similarity=0.8)
    a, b, c = (_entry(f"{TEXT} number {w}") for w in ("one", "two", "three"))
    for e in (a, b, c):
        bank.add(e, NOW)
    assert [e.entry_id for e in bank.entries()] == [b.entry_id, c.entry_id] and bank.evicted == 1
    bank.apply(b.entry_id, None)
    assert bank.get(b.entry_id) is None and len(bank) == 1
    short = _entry("a short lived entry about something else entirely", days=1)
    bank.add(short, NOW)
    later = NOW + timedelta(days=2)
    assert bank.match("a short lived entry about something else entirely", later) == {}
    assert bank.purge(later) == 1 and len(bank) == 1
    assert not bank.add(_entry("already gone", days=1, created=NOW - timedelta(days=5)), NOW)


def test_a_redecided_text_moves_between_banks():
    bank = Bank()
    bank.add(_entry(TEXT, "positive"), NOW)
    bank.add(_entry(TEXT, "negative", ref="d2"), NOW)
    assert len(bank) == 1
    assert set(bank.match(TEXT, NOW)) == {"negative"}


@pytest.mark.parametrize("mutate, message", [
    (lambda o: o.update(bank="maybe"), "'bank'"),
    (lambda o: o.update(exact="xyz"), "'exact'"),
    (lambda o: o.update(minhash=[1, 2]), "'minhash'"),
    (lambda o: o.update(signal_type="pdq"), "'signal_type'"),
    (lambda o: o.update(expires_at="soon"), "'expires_at'"),
])
def test_bad_entries_are_refused_with_the_field(mutate, message):
    obj = _entry(TEXT).as_dict()
    mutate(obj)
    with pytest.raises(BadEntry, match=message):
        parse_entry(json.dumps(obj))


def _decision(did: str, ids: tuple[str, ...], verdicts: dict[str, str], campaign: str | None = None) -> Decision:
    return Decision(did, ids, verdicts, "rv-1", "2026-12-01T10:00:00Z", campaign=campaign)


def test_decisions_become_entries_confirm_positive_reject_negative_unsure_nothing():
    assert bank_of({"propaganda": "confirm", "sectarian": "reject"}) == ("positive", ("propaganda",))
    assert bank_of({"sectarian": "reject"}) == ("negative", ("sectarian",))
    assert bank_of({"sectarian": "unsure"}) is None
    reviews = {"a": {"text": TEXT}, "b": {"text": TEXT + " and more words here"}, "n": {"text": "news about it"},
               "u": {"text": "unsure one"}}
    decisions = [_decision("d1", ("a", "b", "gone"), {"propaganda": "confirm"}, campaign="c-1"),
                 _decision("d2", ("n",), {"propaganda": "reject"}), _decision("d3", ("u",), {"propaganda": "unsure"})]
    wanted, missing = entries_from(decisions, reviews, ttl_days=30)
    assert missing == 1  # "gone" has no review record
    banks = sorted((e.bank, e.decision["post_id"]) for e in wanted.values())
    assert banks == [("negative", "n"), ("positive", "a"), ("positive", "b")]
    assert all(e.decision["campaign"] == "c-1" for e in wanted.values() if e.bank == "positive")
    current = Bank()
    for e in wanted.values():
        current.add(e, NOW)
    assert new_entries(wanted, current, NOW) == []  # a second sync writes nothing


def test_the_ascii_fast_path_of_normalise_removes_exactly_the_characters_the_general_path_removes():
    import unicodedata

    from flagstream.streaming.loop.campaigns import _ASCII_CC, normalise

    for i in range(128):
        ch = chr(i)
        general = unicodedata.category(ch) in ("Cf", "Cc") and ch not in "\n\t"
        assert bool(_ASCII_CC.fullmatch(ch)) == general, i
    assert normalise("RT @a: Join\x00 the\x7f FIGHT\tnow https://x.example/1") == \
        normalise("RT @a: Join the FIGHT\tnow \u200b") == "join the fight now"
