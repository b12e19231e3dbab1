"""The archive path on Apache Spark: ``flagstream rescore INPUT --output OUTPUT --engine spark``.

Why Spark and not more ``--shard`` processes: teams that rescore years of history keep it as Parquet in
a data lake and already run Spark over it. Spark gives what a home-made split cannot: input splitting
over many machines, task retry, and an output committer that publishes each task's file only once, so
a retried task neither duplicates nor drops rows and a rerun replaces a failed run's output.

How it maps onto the local path (:mod:`flagstream.classifier.archive.rescore`), so the two agree row for row:

- Rows become output rows through the local path's own function,
  :func:`flagstream.classifier.archive.rows.rescore_block` (the stream's post contract, the same scorer, the same
  output columns from :func:`~flagstream.classifier.archive.rows.output_schema`). Spark only moves Arrow batches.
- JSONL is read as raw line bytes (``spark.read.text`` cast to binary), not with Spark's JSON reader,
  so every line is judged by the same code as a posts-topic record (a malformed line is an error row,
  never a failed job). Parquet (a file, a directory of part files or a glob) is read by Spark.
- Batches reach Python through ``mapInArrow``: whole rows in, whole rows out, no pandas in between.
  Chosen on that reasoning, not by measurement: ``bench/spark.py --udf-rows N`` times ``pandas_udf``
  against it, but that comparison has not been run on an idle machine yet (bench/RESULTS.md).
- The model directory is shipped to executors with ``SparkContext.addFile`` and loaded once per Python
  worker process (a module-level cache keyed by directory and manifest hash); the executor refuses a
  directory whose ``manifest.json`` is not the one the driver verified, and ``load_scorer`` re-checks
  every file's SHA-256 there. torch gets ``spark.task.cpus`` threads per worker, so N concurrent tasks
  on an N-core executor use N threads, not N x N.
- Output is a directory of Parquet part files written through Spark's committer, one per task.

Size: ~430 lines because session set-up, input reading, the executor-side model cache and the
job itself must all be importable by Spark's Python workers from one module (pickled by reference).
"""

from __future__ import annotations

import glob as globlib
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flagstream.classifier.archive.rescore import RescoreSummary
from flagstream.classifier.archive.files import BOM, RescoreError
from flagstream.classifier.archive.rows import InputRow, Limits, output_schema, rescore_block, to_parquet_row
from flagstream.classifier.inference.scoring import Scorer
from flagstream.classifier.manifest import sha256_file

log = logging.getLogger(__name__)

DEFAULT_MASTER = "local[*]"
# Spark's cluster default for spark.task.maxFailures; local masters take it inside the master URL.
LOCAL_TASK_ATTEMPTS = 4
# A task-local property the executor reads: fail each task's first attempt (tests of task retry).
FAIL_FIRST_ATTEMPT_PROPERTY = "flagstream.test.failFirstAttempt"
FAIL_FIRST_ATTEMPT_ENV = "FLAGSTREAM_SPARK_FAIL_FIRST_ATTEMPT"
_SPARK_OUTPUT_ENTRIES = ("part-", ".part-", "_SUCCESS", "._SUCCESS", "_temporary", "_committed", "_started")


# ------------------------------------------------------------------------------------------
# The row contract: the one place that turns a block of input rows into output rows.
# ------------------------------------------------------------------------------------------
def score_rows(scorer: Scorer, rows: Sequence[InputRow], *, keep_text: bool, limits: Limits) -> list[dict[str, Any]]:
    """Output rows (Parquet form) for a block of input rows: the local path's contract, row for row."""
    return [to_parquet_row(r) for r in rescore_block(rows, scorer, limits=limits, keep_text=keep_text)]


def jsonl_payload(line: bytes | None) -> bytes | None:
    """One JSONL line as the local reader hands it on (its bytes, undecoded); None for a blank line.

    The local reader drops a byte-order mark opening the file; Spark cannot tell a file's first line,
    so a line that starts with one loses it wherever it is (a file made by concatenating files has
    them mid-file).
    """
    value = line or b""
    if value.startswith(BOM):
        value = value[len(BOM):]
    return value if value.strip() else None


# ------------------------------------------------------------------------------------------
# Executor side: the model, once per Python worker process
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """What an executor needs to open the driver's model, and to prove it is the same one."""

    shipped_name: str  # the directory's name under SparkFiles (shipped with addFile)
    manifest_sha256: str  # SHA-256 of the driver's manifest.json
    thresholds: tuple[tuple[str, float], ...] = ()
    precision: str = "auto"
    batch_size: int = 64

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.shipped_name, self.manifest_sha256, self.thresholds, self.precision, self.batch_size)


_SCORERS: dict[tuple[Any, ...], Scorer] = {}
LOADS: list[tuple[int, str]] = []  # (pid, manifest hash) per model load in this process, for tests and logs


def executor_model_dir(spec: ModelSpec) -> Path:
    from pyspark import SparkFiles

    return Path(SparkFiles.get(spec.shipped_name))


def executor_scorer(spec: ModelSpec, threads: int) -> Scorer:
    """This worker's scorer, loaded (and verified) on first use, then reused by every later task."""
    scorer = _SCORERS.get(spec.key)
    if scorer is not None:
        return scorer
    from flagstream.classifier.manifest import MANIFEST_NAME, ModelDirError
    from flagstream.classifier.inference.scoring import load_scorer

    root = executor_model_dir(spec)
    got = sha256_file(root / MANIFEST_NAME) if (root / MANIFEST_NAME).is_file() else "missing"
    if got != spec.manifest_sha256:
        raise ModelDirError(f"executor model {root}: manifest.json hash {got[:16]} is not the driver's "
                            f"{spec.manifest_sha256[:16]}; refusing to score with a different model")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the tokenizer must not add its own thread pool
    started = time.perf_counter()
    scorer = load_scorer(root, dict(spec.thresholds) or None, manifest_sha256=spec.manifest_sha256,
                         batch_size=spec.batch_size, threads=max(1, threads),
                         precision=spec.precision)
    _SCORERS[spec.key] = scorer
    LOADS.append((os.getpid(), spec.manifest_sha256))
    log.info("spark rescore: model %s loaded in pid %d in %.1fs with %d torch thread(s)",
             scorer.info.ref, os.getpid(), time.perf_counter() - started, threads)
    return scorer


ROW_INDEX = "_flagstream_row"  # a Parquet row's index in its file (Spark's _metadata.row_index)


@dataclass(frozen=True)
class JobSpec:
    """Everything the partition function needs; pickled once per task by Spark."""

    model: ModelSpec
    input_format: str  # "parquet" | "jsonl"
    labels: tuple[str, ...]
    keep_text: bool
    limits: Limits


def partition_rows(job: JobSpec) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The function ``mapInArrow`` runs on each partition: Arrow batches of input -> of output rows.

    ``row`` in the output is the row's index in its Parquet file (the local path's ``row`` for a
    one-file input); a JSONL line's number is not known to a split of the file, so it is null there.
    """

    def run(batches: Iterator[Any]) -> Iterator[Any]:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        threads = int(ctx.cpus()) if ctx is not None else 1
        fail_flag = ctx.getLocalProperty(FAIL_FIRST_ATTEMPT_PROPERTY) if ctx is not None else None
        fail = bool(fail_flag) and fail_flag != "0" and ctx.attemptNumber() == 0
        scorer = executor_scorer(job.model, threads)
        schema = output_schema(job.labels, job.keep_text)
        for batch in batches:
            if job.input_format == "jsonl":
                payloads = [v for v in map(jsonl_payload, batch.column(0).to_pylist()) if v is not None]
                rows = [InputRow(i, v) for i, v in enumerate(payloads)]
                file_rows: list[int | None] = [None] * len(rows)
            else:
                records = batch.to_pylist()
                file_rows = [rec.pop(ROW_INDEX, None) for rec in records]
                rows = [InputRow(i, rec) for i, rec in enumerate(records)]
            out = score_rows(scorer, rows, keep_text=job.keep_text, limits=job.limits)
            for row, file_row in zip(out, file_rows):
                row["row"] = file_row
            yield pa_batch(out, schema)
            if fail:  # after real output was produced, so the committer has a partial attempt to discard
                if fail_flag != "1":  # a directory: leave a mark, so a test can prove the failure happened
                    Path(fail_flag, f"task-{ctx.partitionId()}-attempt-0").touch()
                raise RuntimeError(f"injected failure: task {ctx.partitionId()} attempt 0 ({FAIL_FIRST_ATTEMPT_PROPERTY})")

    return run


def pa_batch(rows: list[dict[str, Any]], schema):
    import pyarrow as pa

    return pa.RecordBatch.from_pylist(rows, schema=schema)


# ------------------------------------------------------------------------------------------
# Driver side
# ------------------------------------------------------------------------------------------
def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _local(path: str) -> Path:
    return Path(path[len("file://"):] if path.startswith("file://") else path)


def input_format(path: str, explicit: str | None = None) -> str:
    """``parquet`` or ``jsonl`` for a file, a directory of part files or a glob (by suffix)."""
    if explicit:
        return explicit
    names: list[str] = []
    if not _is_remote(path) and _local(path).is_dir():
        names = sorted(p.name.lower() for p in _local(path).rglob("*")
                       if p.is_file() and not p.name.startswith(("_", ".")))
    else:
        names = [path.lower().rstrip("/")]
    kinds = set()
    for name in names:
        if name.endswith((".parquet", ".pq")) or name.endswith(".snappy.parquet"):
            kinds.add("parquet")
        elif name.endswith((".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz")):
            kinds.add("jsonl")
        elif name.endswith((".csv", ".csv.gz")):
            raise RescoreError(f"{path}: the Spark engine reads Parquet or JSONL; rescore CSV with --engine local "
                               "or convert it to Parquet first")
    if len(kinds) != 1:
        what = "mixes Parquet and JSONL files" if kinds else "has no .parquet or .jsonl file name"
        raise RescoreError(f"{path} {what}; pass --input-format parquet|jsonl")
    return kinds.pop()


def check_paths(input_path: str, output_path: str, overwrite: bool = False) -> None:
    """Fail in one line before Spark or the model starts: missing input, output clobbering something.

    A local output that already holds files is refused unless ``overwrite``; a ``scheme://`` output is
    checked the same way once Spark is up (:func:`existing_output`), before anything is written.

    Raises:
        RescoreError: the input is missing, or the output would clobber something.
    """
    if not _is_remote(input_path):
        local = _local(input_path)
        if not (local.exists() or globlib.glob(str(local))):
            raise RescoreError(f"input {input_path} does not exist (a file, a directory of part files or a glob)")
    if _is_remote(output_path):
        return
    out = _local(output_path)
    if out.name.lower().endswith((".jsonl", ".json", ".ndjson", ".csv")):
        raise RescoreError(f"{output_path}: the Spark engine writes a directory of Parquet part files; "
                           "name the output without a .jsonl/.csv suffix (e.g. scores.parquet)")
    if not _is_remote(input_path):
        src = _local(input_path).resolve()
        if out.resolve() == src or src in out.resolve().parents or out.resolve() in src.parents:
            raise RescoreError("--output must not be the input or lie inside it (or it inside the output)")
    if out.is_file():
        raise RescoreError(f"{output_path} is a file; the Spark engine writes a directory, choose a new path")
    if out.is_dir():
        entries = list(out.iterdir())
        foreign = [p.name for p in entries if not p.name.startswith(_SPARK_OUTPUT_ENTRIES)]
        if foreign:
            raise RescoreError(f"{output_path} exists and is not an earlier Spark output (holds {foreign[0]!r}); "
                               "choose a new output directory")
        if entries and not overwrite:
            raise RescoreError(_EXISTS.format(path=output_path))


_EXISTS = "{path} already holds an output; pass --overwrite to replace it, or choose a new path"


def existing_output(sc: Any, output_path: str) -> list[str] | None:
    """The names of the entries under ``output_path`` through Hadoop's FileSystem (any scheme Spark can
    write: s3a://, hdfs://, abfss://, file://); None when it does not exist."""
    jvm = sc._jvm
    path = jvm.org.apache.hadoop.fs.Path(output_path)
    fs = path.getFileSystem(sc._jsc.hadoopConfiguration())
    if not fs.exists(path):
        return None
    if fs.getFileStatus(path).isFile():
        return [path.getName()]
    return [st.getPath().getName() for st in fs.listStatus(path)]


def write_mode(sc: Any, output_path: str, overwrite: bool) -> str:
    """Spark's save mode for this run: ``overwrite`` only when asked to or when nothing is there to lose.

    Raises:
        RescoreError: the output holds something and ``overwrite`` is not set.
    """
    if overwrite:
        return "overwrite"
    found = existing_output(sc, output_path)
    if found:
        raise RescoreError(_EXISTS.format(path=output_path))
    # nothing there: "errorifexists" still refuses if something appears before the write; an empty directory
    # (or prefix) has nothing to lose, and Spark's errorifexists would refuse it
    return "errorifexists" if found is None else "overwrite"


def local_master(master: str) -> str:
    """``local[N]``/``local[*]``/``local`` -> the same with Spark's cluster default of task attempts.

    A local master retries nothing unless its URL says so (``local[N,F]``); a cluster retries a task
    up to ``spark.task.maxFailures`` (4) times. The default run should behave like the cluster one.
    """
    if master == "local":
        return f"local[1,{LOCAL_TASK_ATTEMPTS}]"
    if master.startswith("local[") and master.endswith("]") and "," not in master:
        return f"{master[:-1]},{LOCAL_TASK_ATTEMPTS}]"
    return master


def spark_session(master: str | None, block_rows: int, app_name: str = "flagstream-rescore"):
    """A SparkSession: ``master`` (or the one spark-submit set, else local[*]), quiet, Arrow batches of ``block_rows``."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    conf = SparkConf()
    chosen = master or conf.get("spark.master", None) or DEFAULT_MASTER
    chosen = local_master(chosen)
    builder = (SparkSession.builder.appName(app_name).master(chosen)
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(block_rows))
               .config("spark.python.worker.reuse", "true")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.executorEnv.HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "1"))
               .config("spark.executorEnv.TOKENIZERS_PARALLELISM", "false"))
    if chosen.startswith("local"):
        builder = builder.config("spark.ui.enabled", "false").config("spark.pyspark.python", sys.executable)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # its INFO lines are connection chatter
    return spark


def _read_input(spark, input_path: str, fmt: str, keep_text: bool):
    from pyspark.sql import functions as F

    if fmt == "jsonl":
        return spark.read.text(input_path).select(F.col("value").cast("binary").alias("line"))
    df = spark.read.parquet(input_path)
    if "text" not in df.columns:
        raise RescoreError(f"{input_path} has no 'text' column (columns: {', '.join(df.columns[:8])}); "
                           "the posts need id and text")
    return df.select("*", F.col("_metadata.row_index").alias(ROW_INDEX))


def spark_output_schema(labels: Sequence[str], keep_text: bool):
    """The contract's output columns (:func:`flagstream.classifier.archive.rows.output_schema`) as a Spark schema."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(output_schema(labels, keep_text))


@dataclass
class SparkRun:
    """A finished Spark rescoring run: the summary and how long the engine took to start."""

    summary: RescoreSummary
    master: str
    partitions: int
    startup_s: float
    extra: dict[str, Any] = field(default_factory=dict)


def rescore_spark(
    model_dir: str | Path,
    input_path: str,
    output_path: str,
    *,
    master: str | None = None,
    thresholds: dict[str, float] | None = None,
    precision: str = "auto",
    batch_size: int = 64,
    block_rows: int = 4096,
    keep_text: bool = False,
    limits: Limits = Limits(),
    fmt: str | None = None,
    fail_first_attempt: str | None = None,
    spark=None,
    overwrite: bool = False,
    manifest_sha256: str | None = None,
) -> SparkRun:
    """Score every row of ``input_path`` into the Parquet directory ``output_path`` on Spark.

    ``spark`` reuses a session (tests); otherwise one is started on ``master`` and stopped at the end.
    ``fail_first_attempt`` (default: env ``FLAGSTREAM_SPARK_FAIL_FIRST_ATTEMPT``), ``"1"`` or a directory
    (where each failing task leaves a mark), makes every task's first attempt fail after it has
    produced part of its output, to prove that a retried task changes nothing.
    """
    from flagstream.classifier.manifest import read_manifest
    from flagstream.classifier.inference.scoring import info_from_manifest

    input_path, output_path = str(input_path), str(output_path)
    fmt = input_format(input_path, fmt)
    check_paths(input_path, output_path, overwrite)
    model_dir = Path(model_dir).resolve()
    # verified (and pinned) on the driver before any cluster time is spent; executors then load only a manifest
    # with these very bytes (executor_scorer), so the pin reaches every executor
    manifest = read_manifest(model_dir, expected_sha256=manifest_sha256)
    info = info_from_manifest(manifest, thresholds)
    spec = ModelSpec(shipped_name=model_dir.name, manifest_sha256=manifest.sha256,
                     thresholds=tuple(sorted((thresholds or {}).items())), precision=precision, batch_size=batch_size)
    if fail_first_attempt is None:
        fail_first_attempt = os.environ.get(FAIL_FIRST_ATTEMPT_ENV) or None

    started = time.perf_counter()
    own = False
    if spark is None:
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()  # embedded in a notebook or a test: use it, leave it running
        if spark is None:
            spark, own = spark_session(master, block_rows), True
    sc = spark.sparkContext
    try:
        startup = time.perf_counter() - started
        try:
            mode = write_mode(sc, output_path, overwrite)  # before any cluster time: never wipes a prefix by surprise
        except RescoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - a Java error (no credentials, unknown scheme), made one line
            raise RescoreError(f"cannot check the output {output_path}: {spark_error_line(exc)}") from None
        _ship(sc, model_dir)
        sc.setLocalProperty(FAIL_FIRST_ATTEMPT_PROPERTY, str(fail_first_attempt) if fail_first_attempt else "0")
        try:
            df = _read_input(spark, input_path, fmt, keep_text)
        except RescoreError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise RescoreError(f"cannot read {input_path}: {spark_error_line(exc)}") from None
        target = 2 * sc.defaultParallelism
        if df.rdd.getNumPartitions() < target:  # a small input in one split would leave cores idle
            df = df.repartition(target)
        job = JobSpec(model=spec, input_format=fmt, labels=tuple(info.labels), keep_text=keep_text, limits=limits)
        schema = spark_output_schema(info.labels, keep_text)
        out = df.mapInArrow(partition_rows(job), schema)
        try:
            out.write.mode(mode).parquet(output_path)
        except Exception as exc:  # noqa: BLE001 - a Java/Python stack trace, made one line for the user
            raise RescoreError(f"the Spark job failed: {spark_error_line(exc)}") from None
        scoring_s = time.perf_counter() - started - startup
        summary = _summarize(spark, output_path, info.labels)
        summary.seconds = scoring_s
        return SparkRun(summary=summary, master=sc.master, partitions=df.rdd.getNumPartitions(), startup_s=startup)
    finally:
        sc.setLocalProperty(FAIL_FIRST_ATTEMPT_PROPERTY, None)
        if own:
            spark.stop()


def spark_error_line(exc: BaseException, limit: int = 300) -> str:
    """The telling line of a Spark/Py4J error: the Python exception an executor raised, else the first line."""
    text = str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):  # a PythonException quotes the executor's traceback; its last line is the cause
        if ln.split(":", 1)[0].endswith(("Error", "Exception")) and not ln.startswith(("at ", "org.", "java.")):
            return ln[:limit]
    return (lines[0] if lines else type(exc).__name__)[:limit]


def _ship(sc, model_dir: Path) -> None:
    """Ship the model directory to every executor (once per SparkContext: Spark refuses a second add)."""
    shipped = sc.__dict__.setdefault("_flagstream_shipped", set())
    if str(model_dir) not in shipped:
        sc.addFile(str(model_dir), recursive=True)
        shipped.add(str(model_dir))


def _summarize(spark, output_path: str, labels: Sequence[str]) -> RescoreSummary:
    """Counts read back from the committed output (so they describe what was written, retries included)."""
    from pyspark.sql import functions as F

    out = spark.read.parquet(output_path)
    aggs = [F.count(F.lit(1)).alias("rows"), F.count("error").alias("errors")]
    aggs += [F.sum(F.when(F.array_contains("labels", lab), 1).otherwise(0)).alias(f"flag_{i}")
             for i, lab in enumerate(labels)]
    row = out.agg(*aggs).collect()[0]
    rows, errors = int(row["rows"]), int(row["errors"])
    classes = {r["error"]: int(r["n"]) for r in out.where(F.col("error").isNotNull()).groupBy("error")
               .agg(F.count(F.lit(1)).alias("n")).collect()}
    return RescoreSummary(rows=rows, scored=rows - errors, errors=errors, error_classes=classes,
                          flagged={lab: int(row[f"flag_{i}"] or 0) for i, lab in enumerate(labels)})


__all__ = ["rescore_spark", "score_rows", "input_format", "check_paths", "local_master", "spark_session",
           "executor_scorer", "ModelSpec", "SparkRun", "DEFAULT_MASTER"]
