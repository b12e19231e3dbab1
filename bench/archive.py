"""Archive rescoring: ``flagstream rescore`` as a subprocess, with its memory sampled while it runs.

Peak RSS is the child's ``VmHWM`` (its high-water mark since exec; ``wait4``'s ``ru_maxrss`` would
count the forked parent's pages too), sampled from ``/proc`` while it runs together with how much
output it has written. Flatness: RSS once 10% of the output is written against the most RSS seen
after that; a scorer whose memory grew with the archive would show the gap, a bounded one none.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _mem_mb(pid: int) -> tuple[float, float] | None:
    """(VmRSS, VmHWM) of a live process in MB; VmHWM is its peak since exec."""
    rss = hwm = None
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024.0
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return (rss, hwm) if rss is not None and hwm is not None else None


def _written_bytes(path: Path) -> int:
    """Output written so far: the JSONL file, or the Parquet part files."""
    parts = path.with_name(path.name + ".parts")
    try:
        if parts.is_dir():
            return sum(p.stat().st_size for p in parts.iterdir())
        return path.stat().st_size
    except OSError:
        return 0


def run_rescore(model_dir: Path, input_path: Path, output_path: Path, threads: int, extra: list[str] | None = None,
                timeout_s: float = 3600.0) -> dict:
    """Run one rescoring subprocess; returns rows, posts/s (its own summary), peak and sampled RSS."""
    cmd = [sys.executable, "-m", "flagstream.cli", "rescore", str(input_path), "--output", str(output_path),
           "--model", str(model_dir), "--summary-json", "--log-level", "WARNING", *(extra or [])]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FLAGSTREAM_SCORING_THREADS": str(threads),
           "PYTHONPATH": str(PROJECT_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    output_path.unlink(missing_ok=True)  # a stale file would read as progress
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    samples: list[tuple[float, float, float, int]] = []  # (t, rss, hwm, output bytes)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            mem = _mem_mb(proc.pid)
            if mem is not None:
                samples.append((time.monotonic() - started, mem[0], mem[1], _written_bytes(output_path)))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out_chunks: list[bytes] = []
    err_chunks: list[bytes] = []
    readers = [threading.Thread(target=lambda s=s, c=c: c.append(s.read()), daemon=True)
               for s, c in ((proc.stdout, out_chunks), (proc.stderr, err_chunks))]
    for r in readers:
        r.start()
    deadline = started + timeout_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.1)
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    for r in readers:
        r.join(5)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        err = b"".join(err_chunks).decode("utf-8", "replace").strip().splitlines()[-3:]
        return {"error": f"rescore exited {proc.returncode}: {' | '.join(err)}"}
    summary = json.loads(b"".join(out_chunks).decode().strip().splitlines()[-1])
    # Flatness: RSS once 10% of the output is written vs the most RSS seen after that.
    final = max((b for *_, b in samples), default=0)
    after = [s for s in samples if final and s[3] >= 0.1 * final]
    return {
        "rows": summary["rows"], "errors": summary["errors"], "posts_per_s": summary["posts_per_s"],
        "scoring_s": summary["seconds"], "process_wall_s": round(wall, 1),
        "peak_rss_mb": round(max((h for _, _, h, _ in samples), default=0.0), 1),
        "rss_at_10pct_rows_mb": round(after[0][1], 1) if after else None,
        "max_rss_after_10pct_rows_mb": round(max(s[1] for s in after), 1) if after else None,
        "rss_by_output_share_mb": {
            f"{q}%": round(next((s[1] for s in samples if final and s[3] >= q / 100 * final), samples[-1][1]), 1)
            for q in (10, 25, 50, 75, 100)} if samples else {},
        "output_mb": round(output_path.stat().st_size / 2**20, 1) if output_path.exists() else None,
    }
