"""Sizing figures for docs/operations.md: one `flagstream stream` process with the shipped model.

Prints, for one consumer process started against a fresh embedded broker:
- when ``/healthz`` first answers and when ``/readyz`` first says ready (seconds after spawn);
- resident memory (VmRSS) once ready, and the peak (VmHWM) after scoring;
- posts/s with ``scoring_threads`` cores, per post length (synthetic posts of ~N words; a real feed is
  a mix, see bench/RESULTS.md for the real-length figures).

Usage: nice -n 5 python bench/capacity.py [--threads 1] [--posts 400] [--words 12,40,120]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flagstream.streaming.kafka.broker import EmbeddedBroker, free_port  # noqa: E402

WORDS = ("the council met on tuesday to discuss the new market square and the river path while families "
         "walked their dogs and children played football near the old school garden in the evening sun").split()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return 0, ""


def _proc_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--posts", type=int, default=400)
    ap.add_argument("--words", default="12,40,120")
    args = ap.parse_args()
    from kafka import KafkaProducer

    with EmbeddedBroker() as broker:
        port = free_port()
        prefix = f"cap{uuid.uuid4().hex[:6]}"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "flagstream.cli", "stream", "--bootstrap-servers", broker.bootstrap,
               "--group-id", prefix, "--posts-topic", f"{prefix}.posts", "--review-topic", f"{prefix}.review",
               "--scores-topic", f"{prefix}.scores", "--dlq-topic", f"{prefix}.dlq", "--metrics-port", str(port),
               "--scoring-threads", str(args.threads), "--max-poll-interval-ms", "10000", "--log-format", "json"]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
        t_health = t_ready = None
        while t_ready is None and time.monotonic() - t0 < 120:
            if t_health is None and _get(f"http://127.0.0.1:{port}/healthz")[0] == 200:
                t_health = time.monotonic() - t0
            if t_health is not None and _get(f"http://127.0.0.1:{port}/readyz")[0] == 200:
                t_ready = time.monotonic() - t0
            time.sleep(0.1)
        rss_ready = _proc_kb(proc.pid, "VmRSS")
        print(f"healthz_first_200_s {t_health:.1f}")
        print(f"readyz_first_200_s {t_ready:.1f}")
        print(f"rss_ready_mb {rss_ready / 1024:.0f}")
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20)
        sent = 0
        for n_words in (int(w) for w in args.words.split(",")):
            base = _metric(_get(f"http://127.0.0.1:{port}/metrics")[1], "flagstream_posts_scored_total")
            for i in range(args.posts):
                words = [WORDS[(i * 7 + j) % len(WORDS)] for j in range(n_words)]
                producer.send(f"{prefix}.posts", key=f"p{sent}".encode(),
                              value=json.dumps({"id": f"p{sent}", "text": " ".join(words)}).encode())
                sent += 1
            producer.flush()
            t1 = time.monotonic()
            while _metric(_get(f"http://127.0.0.1:{port}/metrics")[1], "flagstream_posts_scored_total") < base + args.posts:
                time.sleep(0.2)
                if time.monotonic() - t1 > 600:
                    raise SystemExit("timed out")
            took = time.monotonic() - t1
            print(f"posts_per_s words={n_words} threads={args.threads} {args.posts / took:.0f}")
        print(f"rss_peak_mb {_proc_kb(proc.pid, 'VmHWM') / 1024:.0f}")
        producer.close()
        proc.terminate()
        proc.wait(30)
    print(f"loadavg_at_end {os.getloadavg()[0]:.1f} cores {os.cpu_count()}")


if __name__ == "__main__":
    main()
