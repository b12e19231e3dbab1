"""Spark engine vs the single-process path: ``flagstream rescore`` on the same synthetic Parquet archive.

    nice -n 5 python bench/spark.py --rows 100000        # prints a table and one BENCH_SPARK_JSON line

Each engine runs as the CLI a user would run, in a subprocess, with the memory of its whole process
tree sampled from ``/proc`` (Spark is a JVM plus one Python worker per core; their RSS is summed
per sample, and the peak of that sum is reported next to the peak of the largest single process).

- throughput: rows / scoring seconds (each run's own summary) and rows / whole process wall time;
- start-up cost: the wall time of the same command on a ``--startup-rows`` input (JVM, session,
  model load per worker: what a small job pays whatever its size);
- ``--udf-rows``: ``mapInArrow`` (what the engine uses) vs a ``pandas_udf`` over a struct of every
  column, same scorer, same rows, one warm local[2] session (model already loaded in the workers).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
sys.path.insert(0, str(PROJECT_ROOT / "bench"))


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _tree_rss_mb(root: int) -> tuple[float, float]:
    """(sum of VmRSS over ``root`` and its descendants, largest single VmRSS) in MB."""
    kids = _children()
    todo, total, largest = [root], 0.0, 0.0
    while todo:
        pid = todo.pop()
        todo.extend(kids.get(pid, []))
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        mb = int(line.split()[1]) / 1024.0
                        total += mb
                        largest = max(largest, mb)
                        break
        except OSError:
            continue
    return total, largest


def run_cli(args: list[str], env_extra: dict[str, str] | None = None) -> dict:
    """One ``flagstream rescore`` subprocess: its JSON summary, wall time and peak tree RSS."""
    cmd = [sys.executable, "-m", "flagstream.cli", "rescore", *args, "--summary-json", "--log-level", "WARNING"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(PROJECT_ROOT), **(env_extra or {})}
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = [0.0, 0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            total, largest = _tree_rss_mb(proc.pid)
            peak[0], peak[1] = max(peak[0], total), max(peak[1], largest)
            done.wait(0.5)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    wall = time.monotonic() - started
    done.set()
    t.join(2)
    if proc.returncode != 0:
        raise SystemExit(f"rescore failed ({proc.returncode}): {err.decode(errors='replace')[-600:]}")
    summary = json.loads(out.decode().strip().splitlines()[-1])
    return {"summary": summary, "wall_s": round(wall, 1), "peak_tree_rss_mb": round(peak[0], 1),
            "peak_process_rss_mb": round(peak[1], 1)}


def engines(model: Path, src: Path, work: Path, master: str, threads: int) -> dict:
    local = run_cli([str(src), "--output", str(work / "local.parquet"), "--model", str(model)],
                    {"FLAGSTREAM_SCORING_THREADS": str(threads)})
    spark = run_cli([str(src), "--output", str(work / "spark.parquet"), "--model", str(model), "--engine", "spark",
                     "--master", master])
    return {"local": local, "spark": spark}


def udf_compare(model: Path, src: Path, work: Path, master: str) -> dict:
    """mapInArrow (the engine) vs pandas_udf on one warm session: the transport's cost, nothing else."""
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    from flagstream.classifier.manifest import MANIFEST_NAME, sha256_file
    from flagstream.classifier.archive.rows import InputRow, Limits
    from flagstream.classifier.archive.spark import (ModelSpec, _ship, executor_scorer, rescore_spark, score_rows,
                                                     spark_session)

    spark = spark_session(master, 4096)
    try:
        rows = pq.read_table(src).num_rows
        rescore_spark(model, str(src), str(work / "warm.parquet"), spark=spark)  # workers load the model
        t = time.perf_counter()
        rescore_spark(model, str(src), str(work / "arrow.parquet"), spark=spark)
        arrow_s = time.perf_counter() - t

        model = model.resolve()
        _ship(spark.sparkContext, model)
        spec = ModelSpec(model.name, sha256_file(model / MANIFEST_NAME))
        df = spark.read.parquet(str(src)).repartition(2 * spark.sparkContext.defaultParallelism)
        # Flat output columns: pandas_udf cannot return the contract's nested structs with nulls (PySpark 4.3
        # turns a null struct into NaN and fails converting it), so this side writes less than the engine does.
        schema = "id string, propaganda double, sectarian double, error string"

        @pandas_udf(schema)
        def score(batch):  # a struct column arrives as a pandas DataFrame
            import pandas as pd

            recs = [{k: (None if v is None or v != v else v) for k, v in r.items()} for r in batch.to_dict("records")]
            out = score_rows(executor_scorer(spec, 1), [InputRow(i, r) for i, r in enumerate(recs)],
                             keep_text=False, limits=Limits())
            return pd.DataFrame({
                "id": [o.get("id") for o in out],
                "propaganda": [(o.get("scores") or {}).get("propaganda") for o in out],
                "sectarian": [(o.get("scores") or {}).get("sectarian") for o in out],
                "error": [o.get("error") for o in out],
            })

        t = time.perf_counter()
        (df.select(score(F.struct(*df.columns)).alias("o")).select("o.*")
         .write.mode("overwrite").parquet(str(work / "pandas.parquet")))
        pandas_s = time.perf_counter() - t
        return {"rows": rows, "mapInArrow_posts_per_s": round(rows / arrow_s, 1),
                "pandas_udf_posts_per_s": round(rows / pandas_s, 1)}
    finally:
        spark.stop()


def main(argv: list[str] | None = None) -> int:
    from texts import write_archive

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--startup-rows", type=int, default=100)
    ap.add_argument("--udf-rows", type=int, default=4000, help="0 skips the mapInArrow/pandas_udf comparison")
    ap.add_argument("--model", type=Path, default=PROJECT_ROOT / "models" / "flagstream-minilm")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the single-process path")
    ap.add_argument("--work", type=Path, default=Path("/tmp/flagstream-bench-spark"))
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    res: dict = {"rows": args.rows, "master": args.master, "cores": len(os.sched_getaffinity(0)),
                 "loadavg_start": os.getloadavg()[0], "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}

    small = write_archive(args.work / f"archive-{args.startup_rows}.parquet", args.startup_rows)
    print(f"start-up: {args.startup_rows} rows", file=sys.stderr)
    res["startup"] = engines(args.model, small, args.work / "startup", args.master, args.threads)
    print("startup " + json.dumps(res["startup"]), file=sys.stderr, flush=True)
    big = write_archive(args.work / f"archive-{args.rows}.parquet", args.rows)
    print(f"throughput: {args.rows} rows", file=sys.stderr)
    res["run"] = engines(args.model, big, args.work / "run", args.master, args.threads)
    print("run " + json.dumps(res["run"]), file=sys.stderr, flush=True)
    if args.udf_rows:
        print(f"transport: {args.udf_rows} rows", file=sys.stderr)
        res["udf"] = udf_compare(args.model, write_archive(args.work / f"archive-{args.udf_rows}.parquet",
                                                           args.udf_rows), args.work / "udf", args.master)
    res["loadavg_end"] = os.getloadavg()[0]

    loc, spk = res["run"]["local"], res["run"]["spark"]
    res["ratio_scoring"] = round(spk["summary"]["posts_per_s"] / loc["summary"]["posts_per_s"], 2)
    res["ratio_wall"] = round(loc["wall_s"] / spk["wall_s"], 2)
    print(f"{args.rows} rows, {res['cores']} cores, load average {res['loadavg_start']:.1f} -> {res['loadavg_end']:.1f}")
    print(f"{'engine':<22}{'posts/s (scoring)':>18}{'wall s':>9}{'peak RSS tree MB':>18}{'largest proc MB':>17}"
          f"{'start-up s':>12}")
    for name in ("local", "spark"):
        r, s = res["run"][name], res["startup"][name]
        label = "single process" if name == "local" else f"spark {args.master}"
        print(f"{label:<22}{r['summary']['posts_per_s']:>18.1f}{r['wall_s']:>9.1f}{r['peak_tree_rss_mb']:>18.1f}"
              f"{r['peak_process_rss_mb']:>17.1f}{s['wall_s']:>12.1f}")
    print(f"spark/local throughput: {res['ratio_scoring']}x (scoring), {res['ratio_wall']}x (whole command)")
    if "udf" in res:
        u = res["udf"]
        print(f"transport on {u['rows']} rows: mapInArrow {u['mapInArrow_posts_per_s']} posts/s, "
              f"pandas_udf {u['pandas_udf_posts_per_s']} posts/s")
    print("BENCH_SPARK_JSON " + json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
