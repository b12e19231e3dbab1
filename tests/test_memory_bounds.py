"""Issue 29: state that grows with the stream has a bound (each bound is in docs/operations.md).

The console's bounds are tested in tests/test_console_security.py; the readers' text-free review records
in tests/test_decision_trust_topics.py.
"""

from __future__ import annotations

import tracemalloc

from flagstream.classifier.archive.files import iter_rows
from flagstream.contract.records import Rejection, Source
from flagstream.contract.shadow import ShadowRecord, ShadowSide
from flagstream.streaming.loop.campaigns import CampaignTracker
from flagstream.streaming.ops.shadow_report import summarize

THR = {"propaganda": 0.5, "sectarian": 0.5}


def test_posts_that_normalise_to_nothing_leave_no_campaign_state():
    """The finding: 50,000 posts of only links/mentions/punctuation -> 50,001 ``counts`` at max_posts 100."""
    t = CampaignTracker(max_posts=100)
    for i in range(5_000):
        out = t.assign(f"p{i}", f"@user{i} https://x.example/{i} !!!", ts_ms=i)
        assert out["members"] == 1
    assert len(t.counts) == 0 and len(t.live) == 0 and len(t.entries) == 0
    # a redelivery answers the same, and ordinary posts are still grouped and bounded
    assert t.assign("p7", "@user7 https://x.example/7 !!!", ts_ms=9_000) == t.assign("p7", "...", ts_ms=9_001)
    for i in range(300):
        t.assign(f"q{i}", f"they are vermin drive them out of the city now {i % 3}", ts_ms=10_000 + i)
    assert len(t.entries) <= 100 and len(t.counts) <= 100


def test_shadow_report_duplicate_detector_is_bounded():
    served = ShadowSide({"name": "m", "version": "1"}, {"propaganda": 0.6, "sectarian": 0.1},
                                ("propaganda",), THR)
    cand = ShadowSide({"name": "m", "version": "2"}, {"propaganda": 0.6, "sectarian": 0.1},
                              ("propaganda",), THR)

    def rec(offset: int) -> ShadowRecord:
        return ShadowRecord(f"p{offset}", Source("forum", 0, offset, 0), served, cand)

    # near duplicates (a restart replaying a batch) are still caught; the detector holds at most max_seen keys
    records = [rec(i) for i in range(50)] + [rec(i) for i in range(45, 50)]
    report = summarize(records, max_seen=10)
    assert report.duplicates == 5 and report.pairs[0].posts == 50
    # far-apart duplicates are outside the bound: counted again, by design (and documented)
    assert summarize([rec(0)] + [rec(i) for i in range(1, 20)] + [rec(0)], max_seen=10).duplicates == 0


def test_a_csv_cell_over_the_limit_is_a_dead_letter_not_a_gigabyte(tmp_path):
    """The finding: the CSV field limit was 1 GiB (a 150 MB field took 892 MB)."""
    path = tmp_path / "in.csv"
    with path.open("w", encoding="utf-8") as fh:
        fh.write("id,text\n1,a short post\n")
        fh.write("2," + "x" * 5_000_000 + "\n")
        fh.write("3,another post\n")
    tracemalloc.start()
    rows = list(iter_rows(path, max_message_bytes=100_000))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [r.index for r in rows] == [0, 1, 2]
    assert rows[0].payload == {"id": "1", "text": "a short post"} and rows[2].payload == {"id": "3", "text": "another post"}
    assert isinstance(rows[1].payload, Rejection) and rows[1].payload.error == "message_too_large"
    assert peak < 3_000_000, peak  # the 5 MB cell is never held whole
