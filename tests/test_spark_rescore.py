"""``flagstream rescore --engine spark``: a real local-mode Spark session against the local path.

One SparkSession (``local[2]``, which the engine runs as ``local[2,4]``: 4 attempts per task, like a
cluster) serves the whole module, so Spark's start-up is paid once. Skipped, with the reason, when
Java or PySpark is absent; the real-data test also needs ``../shared/data``.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flagstream.classifier.archive.rescore import rescore_file
from flagstream.classifier.archive.rows import Limits
from flagstream.classifier.inference.scoring import load_scorer
from flagstream.cli import main
from flagstream.config import load_settings

pytestmark = pytest.mark.spark
if shutil.which("java") is None:
    pytest.skip("Java is not installed (Spark needs a JRE 17: apt-get install openjdk-17-jre-headless)",
                allow_module_level=True)
pyspark = pytest.importorskip("pyspark", reason="PySpark is not installed (pip install 'flagstream[spark]')")

from flagstream.classifier.archive.spark import (  # noqa: E402
    ModelSpec,
    executor_scorer,
    rescore_spark,
    spark_session,
)
from flagstream.classifier.manifest import sha256_file  # noqa: E402
from support.model import BENIGN_TEXT, PROPAGANDA_TEXT, SECTARIAN_TEXT  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _bench_texts():
    """bench/texts.py, loaded from its file: the benchmark scripts are not a package on the test path."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("bench_texts", ROOT / "bench" / "texts.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
SHIPPED_MODEL = ROOT / "models" / "flagstream-minilm"
DATA = load_settings().data_dir  # ../shared/data, or $FLAGSTREAM_DATA_DIR
# bf16 vs fp32 differs by at most 0.0082 on real posts (bench/RESULTS.md); two bf16 runs that batch
# the same posts differently differ by no more than that, so 0.01 is the agreement bar.
BF16_NOISE = 0.01


@pytest.fixture(scope="module")
def spark():
    session = spark_session("local[2]", block_rows=256)
    yield session
    session.stop()


def _posts(n: int) -> list[dict]:
    texts = (PROPAGANDA_TEXT, SECTARIAN_TEXT, BENIGN_TEXT)
    return [{"id": f"p{i}", "text": f"{texts[i % 3]} {i}", "lang": "en", "n": i} for i in range(n)]


def _write_jsonl(path: Path, rows: list[dict], extra: tuple[bytes, ...] = (), first: bytes = b"") -> Path:
    with path.open("wb") as fh:
        fh.write(first)
        for r in rows:
            fh.write(json.dumps(r).encode() + b"\n")
        for line in extra:
            fh.write(line + b"\n")
    return path


def _rows(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return pq.read_table(path).to_pylist()


def _key(r: dict) -> tuple:
    """What must be equal between the engines: id, verdict (or error class and reason), model."""
    scores = tuple(round(v, 6) for v in (r.get("scores") or {}).values())
    return (str(r.get("id")), r.get("error"), r.get("reason"), tuple(r.get("labels") or ()), scores, r.get("model"))


# ------------------------------------------------------------------------------------------
@pytest.mark.data
def test_real_rows_same_ids_labels_scores_as_local_path(tmp_path, spark):
    """2,000 real posts, the shipped model: Spark and the local path agree post for post."""
    real_texts = _bench_texts().real_texts

    texts = real_texts(DATA, 2000)
    if len(texts) < 2000:
        pytest.skip(f"needs 2,000 posts from {DATA} (found {len(texts)}); the shared data is absent (set FLAGSTREAM_DATA_DIR)")
    src = tmp_path / "real.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": f"r{i}", "text": t} for i, t in enumerate(texts)]), src,
                   row_group_size=500)
    scorer = load_scorer(SHIPPED_MODEL)
    rescore_file(scorer, src, tmp_path / "local.parquet")
    run = rescore_spark(SHIPPED_MODEL, str(src), str(tmp_path / "spark.parquet"), spark=spark)

    local = {r["id"]: r for r in _rows(tmp_path / "local.parquet")}
    remote = pq.read_table(tmp_path / "spark.parquet").to_pylist()
    assert len(remote) == 2000 and Counter(r["id"] for r in remote) == Counter(local.keys())  # no drop, no duplicate
    assert run.summary.rows == 2000 and run.summary.errors == sum(r["error"] is not None for r in local.values())
    thresholds = scorer.info.thresholds
    worst, flipped = 0.0, []
    for r in remote:
        ref = local[r["id"]]
        assert r["error"] == ref["error"] and r["model"] == ref["model"] == scorer.info.ref
        assert r["row"] == ref["row"]  # the row's index in the input file, as the local path numbers it
        if ref["error"]:
            continue
        for lab, p in r["scores"].items():
            dp = abs(p - ref["scores"][lab])
            worst = max(worst, dp)
            if (lab in r["labels"]) != (lab in ref["labels"]):
                flipped.append((r["id"], lab, dp, abs(ref["scores"][lab] - thresholds[lab])))
    assert worst <= BF16_NOISE, f"max |dp| {worst:.5f} exceeds the bf16 noise {BF16_NOISE}"
    # A label may differ only for a post whose score sits within the noise of its threshold.
    assert all(margin <= BF16_NOISE for *_, margin in flipped), flipped
    assert sum(bool(r["labels"]) for r in remote) > 0  # the comparison covers flagged posts too


def test_hostile_corpus_same_error_rows_as_local_path(tmp_path, spark, linear_model_dir):
    """Malformed rows are error rows with the local path's classes, and never fail the Spark job."""
    good = _posts(30)
    hostile = (
        b"not json at all", b"[1, 2]", b'"a string"', json.dumps({"id": "blank", "text": "   "}).encode(),
        json.dumps({"id": "num", "text": 42}).encode(), json.dumps({"id": "notext"}).encode(),
        json.dumps({"id": "long", "text": "x" * 500}).encode(), json.dumps({"id": "dup", "text": BENIGN_TEXT}).encode(),
        json.dumps({"id": "dup", "text": PROPAGANDA_TEXT}).encode(), b'{"id": "utf8", "text": "caf\xe9 \xff fighters"}',
        json.dumps({"id": "surrogate", "text": "\ud800 x"}).encode(), b'{"id": 7, "text": "numeric id"}',
        json.dumps({"id": "late", "text": BENIGN_TEXT, "labels": ["forged"], "new_col": {"a": [1, 2]}}).encode(),
        b"   ", b"{\"id\": \"torn\", \"text\": \"cut", b'{"id": "big", "text": "' + b"y" * 30_000 + b'"}',
        b'{"id": "inf", "text": "numbers", "n": 1e400}', b'{"text": "no id at all"}',
    )
    bom = b'\xef\xbb\xbf{"id": "bom", "text": "after the byte order mark that opens the file"}\n'
    src = _write_jsonl(tmp_path / "hostile.jsonl", good, hostile, first=bom)
    local_out = tmp_path / "local.jsonl"
    rescore_file(load_scorer(linear_model_dir), src, local_out, max_text_chars=400, max_message_bytes=20_000)
    run = rescore_spark(linear_model_dir, str(src), str(tmp_path / "spark.parquet"),
                        limits=Limits(max_text_chars=400, max_message_bytes=20_000), spark=spark)
    local, remote = _rows(local_out), _rows(tmp_path / "spark.parquet")
    assert sorted(map(_key, remote)) == sorted(map(_key, local))  # same rows, same verdicts, same reasons
    errors = Counter(r["error"] for r in remote if r["error"])
    assert errors == Counter(r["error"] for r in local if r.get("error"))
    # Every hostile line is an error row but the blank one (not a row) and dup, dup, late (valid posts).
    assert len(errors) >= 7 and sum(errors.values()) == len(hostile) - 4, errors
    assert run.summary.errors == sum(errors.values()) and run.summary.rows == len(local)
    assert run.summary.error_classes == dict(errors)
    # Input fields named like the product's own are nested under extra, never posing as a verdict.
    late = next(r for r in remote if r["id"] == "late")
    assert json.loads(late["extra"]) == {"labels": ["forged"], "new_col": {"a": [1, 2]}} and late["labels"] == []


def test_deeply_nested_line_is_an_error_row_not_a_failed_job(tmp_path, spark, linear_model_dir):
    src = _write_jsonl(tmp_path / "deep.jsonl", _posts(5), (b"[" * 200_000 + b"]" * 200_000,))
    run = rescore_spark(linear_model_dir, str(src), str(tmp_path / "out.parquet"), spark=spark)
    rows = _rows(tmp_path / "out.parquet")
    assert len(rows) == 6 and [r["error"] for r in rows if r["error"]] == ["not_json"]
    assert run.summary.scored == 5


def test_injected_task_failure_changes_nothing(tmp_path, spark, linear_model_dir):
    """Every task's first attempt fails after producing output; the retried run equals a clean one."""
    posts = _posts(3000)
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(posts), src, row_group_size=400)
    clean = rescore_spark(linear_model_dir, str(src), str(tmp_path / "clean.parquet"), spark=spark)
    marks = tmp_path / "failed-attempts"
    marks.mkdir()
    retried = rescore_spark(linear_model_dir, str(src), str(tmp_path / "retried.parquet"), spark=spark,
                            fail_first_attempt=str(marks))
    failed = sorted(p.name for p in marks.iterdir())
    assert len(failed) == retried.partitions >= 2, failed  # every task really failed once, then succeeded
    a, b = _rows(tmp_path / "clean.parquet"), _rows(tmp_path / "retried.parquet")
    assert len(b) == len(posts) and Counter(r["id"] for r in b) == Counter(p["id"] for p in posts)
    assert sorted(map(_key, a)) == sorted(map(_key, b))
    assert clean.summary.as_dict()["flagged"] == retried.summary.as_dict()["flagged"]
    assert not list((tmp_path / "retried.parquet").glob("_temporary*"))


def test_one_model_load_per_worker_process_with_one_torch_thread(spark, linear_model_dir):
    """Many tasks, two cores: each Python worker loads the model once and reuses it for later tasks."""
    from flagstream.classifier.manifest import MANIFEST_NAME, ModelDirError
    from flagstream.classifier.archive.spark import _ship

    sc = spark.sparkContext
    _ship(sc, Path(linear_model_dir).resolve())
    spec = ModelSpec(Path(linear_model_dir).resolve().name, sha256_file(Path(linear_model_dir) / MANIFEST_NAME))

    def probe(_):
        import os

        import torch
        from pyspark import TaskContext

        from flagstream.classifier.archive.spark import LOADS, executor_scorer  # the worker's own module state

        scorer = executor_scorer(spec, TaskContext.get().cpus())
        loads = sum(1 for pid, h in LOADS if pid == os.getpid() and h == spec.manifest_sha256)
        yield (os.getpid(), id(scorer), loads, torch.get_num_threads())

    seen = sc.parallelize(range(24), 12).mapPartitions(probe).collect()
    assert len(seen) == 12
    pids = {pid for pid, *_ in seen}
    assert 1 <= len(pids) <= 2  # at most one Python worker per core, reused across the 12 tasks
    assert all(loads == 1 for _, _, loads, _ in seen), seen  # never reloaded by a later task
    assert len({(pid, obj) for pid, obj, *_ in seen}) == len(pids)  # one scorer object per process
    assert {threads for *_, threads in seen} == {1}  # spark.task.cpus = 1: two workers, two threads in all

    wrong = ModelSpec(spec.shipped_name, "0" * 64)

    def refuse(_):
        from flagstream.classifier.archive.spark import executor_scorer

        yield executor_scorer(wrong, 1).info.ref

    with pytest.raises(Exception, match="refusing to score with a different model") as err:
        sc.parallelize([0], 1).mapPartitions(refuse).collect()
    assert ModelDirError.__name__ in str(err.value)


def test_cli_engine_spark_and_its_usage_errors(tmp_path, spark, linear_model_dir, capsys):
    src = _write_jsonl(tmp_path / "in.jsonl", _posts(40))
    out = tmp_path / "scores"
    assert main(["rescore", str(src), "--output", str(out), "--model", str(linear_model_dir), "--engine", "spark",
                 "--summary-json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["rows"] == 40 and summary["errors"] == 0 and summary["engine"] == "spark"
    assert sum(summary["flagged"].values()) > 0
    assert len(list(out.glob("part-*.parquet"))) >= 1 and (out / "_SUCCESS").exists()
    # Issue 29: rerunning into the same output is refused without --overwrite (one line, nothing touched) ...
    before = sorted(p.name for p in out.iterdir())
    capsys.readouterr()
    assert main(["rescore", str(src), "--output", str(out), "--model", str(linear_model_dir), "--engine", "spark"]) == 2
    err = capsys.readouterr().err.strip()
    assert "already holds an output; pass --overwrite" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == before
    # ... and so is a scheme:// output: checked through Hadoop's FileSystem (the path every scheme takes)
    from flagstream.classifier.archive.files import RescoreError
    from flagstream.classifier.archive.spark import existing_output, write_mode

    sc = spark.sparkContext
    with pytest.raises(RescoreError, match="already holds an output"):
        write_mode(sc, f"file://{out}", overwrite=False)
    assert write_mode(sc, f"file://{out}", overwrite=True) == "overwrite"
    assert existing_output(sc, f"file://{tmp_path}/nothing-here") is None
    assert write_mode(sc, f"file://{tmp_path}/nothing-here", overwrite=False) == "errorifexists"
    # with --overwrite it replaces it (Spark's overwrite), never appends
    assert main(["rescore", str(src), "--output", str(out), "--model", str(linear_model_dir), "--engine", "spark",
                 "--overwrite"]) == 0
    assert pq.read_table(out).num_rows == 40
    capsys.readouterr()

    csv_in = tmp_path / "in.csv"
    csv_in.write_text("id,text\na,hello\n", encoding="utf-8")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me", encoding="utf-8")
    cases = [
        (["rescore", str(csv_in), "--output", str(tmp_path / "o1"), "--engine", "spark"], "reads Parquet or JSONL"),
        (["rescore", str(src), "--output", str(tmp_path / "o.jsonl"), "--engine", "spark"], "directory of Parquet"),
        (["rescore", str(src), "--output", str(foreign), "--engine", "spark"], "not an earlier Spark output"),
        (["rescore", str(tmp_path / "nope.parquet"), "--output", str(tmp_path / "o2"), "--engine", "spark"],
         "does not exist"),
        (["rescore", str(src), "--output", str(tmp_path / "o3"), "--engine", "spark", "--resume"], "--resume"),
        (["rescore", str(src), "--output", str(tmp_path / "o5"), "--engine", "spark", "--shard", "1/2"], "--shard"),
        (["rescore", str(src), "--output", str(tmp_path / "o4.jsonl"), "--master", "local[2]"], "--engine spark only"),
    ]
    for argv, message in cases:
        assert main([*argv, "--model", str(linear_model_dir)]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert (foreign / "notes.txt").read_text(encoding="utf-8") == "keep me"


def test_model_manifest_pin_applies_to_spark(tmp_path, linear_model_dir, capsys):
    """Issue 29: ``rescore --engine spark`` ignored ``model_manifest_sha256``. Now the driver refuses any other
    manifest in one line before Spark starts, and executors load only a manifest with the pinned bytes."""
    src = _write_jsonl(tmp_path / "in.jsonl", _posts(4))
    capsys.readouterr()
    argv = ["rescore", str(src), "--output", str(tmp_path / "pinned"), "--model", str(linear_model_dir),
            "--engine", "spark", "--model-manifest-sha256", "0" * 64]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "model_manifest_sha256 pins" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "pinned").exists()
