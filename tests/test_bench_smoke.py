"""The benchmark's smoke mode runs end to end, so ``bench/run.py`` cannot rot unnoticed.

It measures nothing we assert on (speeds on a shared CI runner are noise); it checks that every
part ran and reported the figures the README's results table is made of.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import e2e  # noqa: E402  (bench/e2e.py: the rate rule the smoke run applies)


def check_rate(tp: dict) -> None:
    """A stream rate, or the reason there is none: which one depends on the CPU's speed, so both pass."""
    assert "error" not in tp, tp
    if "posts_per_s" in tp:
        assert tp["posts_per_s"] > 0 and tp["span_s"] >= e2e.MIN_RATE_SPAN_S, tp
    else:
        assert tp["rate_refused"].startswith("too few posts for a stream rate") and "\n" not in tp["rate_refused"], tp


def test_a_run_too_short_for_a_rate_still_reports_its_counts():
    # 150 posts in 5 batches over 0.85 s (a fast CPU): no rate, but no error either
    short = e2e.stream_rate([1000 + 212.5 * (i // 30) for i in range(150)], 150)
    assert "posts_per_s" not in short and short["span_s"] == 0.85 and short["batches"] == 5
    check_rate(short)
    # the same posts over 4.25 s: a rate over the posts after the first batch
    slow = e2e.stream_rate([1000 + 1062.5 * (i // 30) for i in range(150)], 150)
    assert slow["posts_per_s"] == round(120 / 4.25, 1)
    check_rate(slow)
    assert e2e.stream_rate([], 0)["rate_refused"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bench_smoke_reports_every_figure(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--smoke"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [l for l in proc.stdout.splitlines() if l.startswith("BENCH_JSON ")]
    assert len(lines) == 1, proc.stdout[-2000:]
    res = json.loads(lines[0][len("BENCH_JSON "):])
    for key in ("speedup_vs_pipeline", "roofline_fraction", "parity", "e2e", "archive", "model", "cpu"):
        assert key in res, key
    model = res["model"]
    assert model["pipeline"]["posts_per_s"] > 0 and res["speedup_vs_pipeline"] > 0
    assert model["flagstream"]["fp32"]["posts_per_s"] > 0
    # The baseline runs the very same weights: its probabilities match flagstream's fp32 path.
    assert model["pipeline"]["max_abs_diff_vs_flagstream_fp32_logits"] < 1e-3
    for name, par in res["parity"].items():
        assert 0.0 <= par["flag_agreement"] <= 1.0 and par["max_abs_score_diff"] >= 0.0, name
    roof = model["roofline"]
    assert roof["bf16_peak_gflops"] > 0 and roof["model_mflops_per_post"] > 0 and 0 < res["roofline_fraction"] < 1.5
    e2e = res["e2e"]
    check_rate(e2e["throughput"])
    # One stream process, no rebalance: every post is scored exactly once (the whole scores topic is read back).
    tp = e2e["throughput"]
    assert tp["verdicts"] + tp["dead_lettered"] == tp["posts"] and tp["duplicate_verdicts"] == 0, tp
    assert "p50_ms" in e2e["latency_at_half_load"] and "p99_ms" in e2e["latency_at_half_load"], e2e
    archive = res["archive"]
    for part in ("transformer", "linear_jsonl", "linear_parquet"):
        assert archive[part]["rows"] > 0 and archive[part]["peak_rss_mb"] > 0, (part, archive[part])
    assert archive["linear_jsonl"]["rows"] == archive["rows"]
    # The human-readable table is printed too.
    assert "posts/s" in proc.stdout and "roofline" in proc.stdout
