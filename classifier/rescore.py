"""Batch rescoring of archives: JSONL, CSV or Parquet in; JSONL or Parquet out, one row per input row.

Designed for archives far larger than memory: input is read in blocks (JSONL and CSV line by line,
Parquet by record batch), each block is scored through the same :class:`~classifier.scoring.Scorer`
the streaming pipeline uses (so a post gets the same scores either way), and written before the next
block is read; memory is bounded by the block size, not the archive size.

Interrupted runs resume (``resume=True``): the JSONL output is flushed block by block, so the number
of complete lines says how many selected rows are done (a torn last line is cut off); Parquet output
is written as closed part files in ``OUTPUT.parts/`` and merged into ``OUTPUT`` at the end, so the
rows in readable parts say the same. ``shard=(k, n)`` keeps rows whose 0-based input row index is
``k-1`` mod ``n``: deterministic, balanced, and the union of the n shards' outputs is a single run's.

Parquet output keeps a Parquet input's column types; extra columns from JSONL or CSV become strings
(non-string JSON values JSON-encoded), since one file's rows need one schema. The ``text`` column is
left out unless ``keep_text``: archives of scores should not be second copies of the posts.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from classifier.scoring import Scorer, flagged_labels, scores_dict

log = logging.getLogger(__name__)

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz")
CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
OUTPUT_FIELDS = ("scores", "labels", "model", "error")
PART_ROWS = 16_384  # rows per Parquet part file: the most a crash can cost on resume


class RescoreError(ValueError):
    """A problem with the files or options of a rescoring run, phrased for the user."""


def file_format(path: Path, *, output: bool = False) -> str:
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(JSONL_SUFFIXES):
        if output and name.endswith(".gz"):
            raise RescoreError(f"{path}: compressed output is not supported; write .jsonl or .parquet")
        return "jsonl"
    if name.endswith(CSV_SUFFIXES) and not output:
        return "csv"
    kinds = ".jsonl or .parquet" if output else ".jsonl, .csv or .parquet"
    raise RescoreError(f"{path}: unknown file type; use {kinds}")


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """``"K/N"`` (1 <= K <= N) -> ``(K, N)``."""
    if value is None:
        return None
    k, sep, n = value.partition("/")
    if not sep or not k.strip().isdigit() or not n.strip().isdigit() or not 1 <= int(k) <= int(n):
        raise RescoreError(f"--shard expects K/N with 1 <= K <= N (e.g. 2/8), got {value!r}")
    return int(k), int(n)


# ------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------
@dataclass
class InputRow:
    index: int  # 0-based row number in the whole input file
    record: dict[str, Any] | None  # None when the line is not a JSON object
    problem: str | None = None  # error class when the row cannot even be parsed


def _open_text(path: Path) -> IO[str]:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", errors="replace", newline="")
    return path.open("r", encoding="utf-8-sig", errors="replace", newline="")


def _iter_jsonl(path: Path) -> Iterator[InputRow]:
    index = 0
    with _open_text(path) as fh:
        for line in fh:
            if not line.strip():
                continue  # blank lines are not rows
            try:
                obj = json.loads(line)
            except ValueError:
                yield InputRow(index, None, "not_json")
            else:
                if isinstance(obj, dict):
                    yield InputRow(index, obj)
                else:
                    yield InputRow(index, None, "not_object")
            index += 1


def _iter_csv(path: Path) -> Iterator[InputRow]:
    csv.field_size_limit(1 << 30)
    with _open_text(path) as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:
            return
        for index, rec in enumerate(reader):
            rec.pop(None, None)  # cells beyond the header
            yield InputRow(index, dict(rec))


def _iter_parquet(path: Path, block: int) -> Iterator[InputRow]:
    import pyarrow.parquet as pq

    index = 0
    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=block):
        for rec in batch.to_pylist():
            yield InputRow(index, rec)
            index += 1


def iter_rows(path: Path, block: int = 4096) -> Iterator[InputRow]:
    fmt = file_format(path)
    if fmt == "jsonl":
        return _iter_jsonl(path)
    if fmt == "csv":
        return _iter_csv(path)
    return _iter_parquet(path, block)


def count_rows(path: Path) -> int | None:
    """Rows in the input when cheap to know (Parquet metadata, uncompressed JSONL), else None."""
    fmt = file_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if fmt == "jsonl" and not path.name.endswith(".gz"):
        n = 0
        with path.open("rb") as fh:
            for line in fh:
                n += bool(line.strip())
        return n
    return None


def input_schema(path: Path):
    """The Parquet input's Arrow schema (column types are kept in Parquet output), else None."""
    if file_format(path) != "parquet":
        return None
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).schema_arrow


# ------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------
def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class JsonlOutput:
    """Appends one JSON line per row, flushed per block; resume = count complete lines."""

    def __init__(self, path: Path, resume: bool) -> None:
        self.path = path
        self.done = self._recover() if resume and path.exists() else 0
        if not resume or not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
        self.fh = path.open("ab")

    def _recover(self) -> int:
        """Complete lines already written; a torn last line (no newline) is truncated away."""
        lines, last_nl = 0, -1
        pos = 0
        with self.path.open("rb") as fh:
            while chunk := fh.read(1 << 22):
                c = chunk.count(b"\n")
                if c:
                    lines += c
                    last_nl = pos + chunk.rindex(b"\n")
                pos += len(chunk)
        if last_nl + 1 != pos:
            log.info("rescore: dropping a torn last line of %d bytes from %s", pos - last_nl - 1, self.path)
            with self.path.open("r+b") as fh:
                fh.truncate(last_nl + 1)
        return lines

    def first_model(self) -> str | None:
        with self.path.open("rb") as fh:
            line = fh.readline()
        try:
            return json.loads(line).get("model") if line.strip() else None
        except ValueError:
            return None

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        buf = "".join(json.dumps(r, ensure_ascii=False, default=_json_default) + "\n" for r in rows)
        self.fh.write(buf.encode("utf-8"))
        self.fh.flush()

    def finish(self) -> None:
        self.fh.close()

    def abort(self) -> None:
        self.fh.close()


class ParquetOutput:
    """Closed part files in ``OUTPUT.parts/``, merged into ``OUTPUT`` (streamed) on success."""

    def __init__(self, path: Path, resume: bool, labels: Sequence[str], in_schema, keep_text: bool) -> None:
        import pyarrow as pa

        self.pa = pa
        self.path = path
        self.parts = path.with_name(path.name + ".parts")
        self.labels = list(labels)
        self.in_schema = in_schema
        self.keep_text = keep_text
        self.schema = None
        self.buffer: list[dict[str, Any]] = []
        self.done = 0
        if not resume:
            shutil.rmtree(self.parts, ignore_errors=True)
            path.unlink(missing_ok=True)
        else:
            if path.exists():  # a finished earlier run: its rows become the first part
                self.parts.mkdir(parents=True, exist_ok=True)
                if not any(self.parts.iterdir()):
                    path.rename(self.parts / "part-000000.parquet")
                else:
                    path.unlink()
            self.done = self._recover()
        self.parts.mkdir(parents=True, exist_ok=True)

    def _part_files(self) -> list[Path]:
        return sorted(self.parts.glob("part-*.parquet")) if self.parts.exists() else []

    def _recover(self) -> int:
        import pyarrow.parquet as pq

        rows = 0
        for part in self._part_files():
            try:
                meta = pq.ParquetFile(part)
                rows += meta.metadata.num_rows
                if self.schema is None:
                    self.schema = meta.schema_arrow
            except Exception:  # noqa: BLE001 - a part torn by the crash: redo its rows
                log.info("rescore: removing incomplete part %s", part.name)
                part.unlink()
        for tmp in self.parts.glob("*.tmp"):
            tmp.unlink()
        return rows

    def first_model(self) -> str | None:
        import pyarrow.parquet as pq

        parts = self._part_files()
        if not parts:
            return None
        col = pq.read_table(parts[0], columns=["model"]).column("model")
        return col[0].as_py() if len(col) else None

    def _build_schema(self, rows: Sequence[dict[str, Any]]):
        pa = self.pa
        fields: list = []
        seen: set[str] = set()
        in_types = {f.name: f.type for f in self.in_schema} if self.in_schema is not None else {}
        for row in rows:
            for key in row:
                if key in seen or key in OUTPUT_FIELDS:
                    continue
                seen.add(key)
                fields.append(pa.field(key, in_types.get(key, pa.string())))
        fields += [
            pa.field("scores", pa.struct([pa.field(lab, pa.float64()) for lab in self.labels])),
            pa.field("labels", pa.list_(pa.string())),
            pa.field("model", pa.string()),
            pa.field("error", pa.string()),
        ]
        return pa.schema(fields)

    def _coerce(self, row: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for f in self.schema:
            value = row.get(f.name)
            if value is not None and f.type == self.pa.string() and not isinstance(value, str):
                value = json.dumps(value, ensure_ascii=False, default=_json_default)
            out[f.name] = value
        return out

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        if self.schema is None and rows:
            self.schema = self._build_schema(rows)
        self.buffer.extend(rows)
        while len(self.buffer) >= PART_ROWS:
            self._flush(self.buffer[:PART_ROWS])
            del self.buffer[:PART_ROWS]

    def _flush(self, rows: Sequence[dict[str, Any]]) -> None:
        import pyarrow.parquet as pq

        if not rows:
            return
        table = self.pa.Table.from_pylist([self._coerce(r) for r in rows], schema=self.schema)
        n = len(self._part_files())
        final = self.parts / f"part-{n:06d}.parquet"
        tmp = final.with_suffix(".tmp")
        pq.write_table(table, tmp)
        tmp.rename(final)  # a part is either complete or absent

    def finish(self) -> None:
        import pyarrow.parquet as pq

        self._flush(self.buffer)
        self.buffer = []
        tmp = self.path.with_name(self.path.name + ".tmp")
        schema = self.schema or self._build_schema([{"id": None}])
        with pq.ParquetWriter(tmp, schema) as writer:
            for part in self._part_files():
                pf = pq.ParquetFile(part)
                for g in range(pf.num_row_groups):
                    writer.write_table(pf.read_row_group(g).cast(schema))
        tmp.replace(self.path)
        shutil.rmtree(self.parts, ignore_errors=True)

    def abort(self) -> None:
        """Keep only complete parts: buffered rows are redone on resume."""
        self.buffer = []


# ------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------
@dataclass
class RescoreSummary:
    rows: int = 0  # rows written by this run
    resumed_from: int = 0  # rows already in the output before this run
    scored: int = 0
    errors: int = 0
    flagged: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def posts_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "resumed_from": self.resumed_from, "scored": self.scored,
                "errors": self.errors, "flagged": dict(self.flagged), "seconds": round(self.seconds, 3),
                "posts_per_s": round(self.posts_per_s, 1)}

    def lines(self) -> list[str]:
        flagged = ", ".join(f"{k} {v}" for k, v in self.flagged.items())
        head = f"rescored {self.rows} rows in {self.seconds:.1f}s ({self.posts_per_s:.1f} posts/s)"
        if self.resumed_from:
            head += f", after {self.resumed_from} rows from an earlier run"
        return [head, f"flagged: {flagged or 'none'}", f"errors: {self.errors}"]


def text_problem(record: dict[str, Any], max_text_chars: int) -> str | None:
    """Why a row's text cannot be scored (same error classes as the dead-letter topic), or None."""
    if "text" not in record or record["text"] is None:
        return "missing_text"
    text = record["text"]
    if not isinstance(text, str) or not text.strip():
        return "invalid_text"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from JSON escapes
        return "invalid_text"
    if len(text) > max_text_chars:
        return "text_too_long"
    return None


def _score_block(scorer: Scorer, texts: list[str]) -> tuple[np.ndarray, list[bool]]:
    """Scores for a block; if the model fails on the block, isolate the failing texts one by one."""
    try:
        return scorer.score(texts), [True] * len(texts)
    except Exception:  # noqa: BLE001 - one bad text must not kill a million-row run
        log.warning("rescore: scoring a block of %d failed; retrying one by one", len(texts), exc_info=True)
    out = np.zeros((len(texts), len(scorer.info.labels)), dtype=np.float32)
    ok = []
    for i, t in enumerate(texts):
        try:
            out[i] = scorer.score([t])[0]
            ok.append(True)
        except Exception:  # noqa: BLE001
            ok.append(False)
    return out, ok


def rescore_file(
    scorer: Scorer,
    input_path: str | Path,
    output_path: str | Path,
    *,
    resume: bool = False,
    shard: tuple[int, int] | None = None,
    block_rows: int = 2048,
    keep_text: bool = False,
    max_text_chars: int = 10_000,
    progress: bool | None = None,
) -> RescoreSummary:
    """Score every row of ``input_path`` into ``output_path``; see the module docstring."""
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise RescoreError(f"input {input_path} does not exist")
    file_format(input_path)
    out_fmt = file_format(output_path, output=True)
    if input_path.resolve() == output_path.resolve():
        raise RescoreError("--output must differ from the input file")
    info = scorer.info
    ref = info.ref

    writer: JsonlOutput | ParquetOutput
    if out_fmt == "jsonl":
        writer = JsonlOutput(output_path, resume)
    else:
        writer = ParquetOutput(output_path, resume, info.labels, input_schema(input_path), keep_text)
    if writer.done:
        previous = writer.first_model()
        if previous is not None and previous != ref:
            writer.abort()
            raise RescoreError(
                f"{output_path} was started with model {previous}, not {ref}; rescore into a new file instead of --resume"
            )

    summary = RescoreSummary(resumed_from=writer.done, flagged={lab: 0 for lab in info.labels})
    skip = writer.done
    k, n = shard if shard else (1, 1)

    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show:
        from tqdm import tqdm

        total = count_rows(input_path)
        if total is not None:
            total = len(range(k - 1, total, n))
        bar = tqdm(total=total, initial=skip, unit="post", dynamic_ncols=True, file=sys.stderr)

    started = time.perf_counter()
    selected = 0
    block: list[InputRow] = []

    def flush(rows: list[InputRow]) -> None:
        valid = [i for i, r in enumerate(rows) if r.record is not None and text_problem(r.record, max_text_chars) is None]
        texts = [rows[i].record["text"] for i in valid]  # type: ignore[index]
        probs, ok = _score_block(scorer, texts) if texts else (np.zeros((0, len(info.labels))), [])
        scored_at = dict(zip(valid, range(len(valid))))
        out_rows = []
        for i, r in enumerate(rows):
            rec = r.record or {}
            row: dict[str, Any] = {"id": rec.get("id")}
            for key, value in rec.items():
                if key in ("id",) or (key == "text" and not keep_text):
                    continue
                row[key] = value
            j = scored_at.get(i)
            if j is not None and ok[j]:
                p = probs[j]
                labs = flagged_labels(p, info)
                row.update(scores=scores_dict(p, info), labels=labs, model=ref)
                for lab in labs:
                    summary.flagged[lab] += 1
                summary.scored += 1
            else:
                problem = r.problem or (text_problem(rec, max_text_chars) if j is None else "scoring_failed")
                row.update(model=ref, error=problem)
                summary.errors += 1
            out_rows.append(row)
        writer.write(out_rows)
        summary.rows += len(out_rows)
        if bar is not None:
            bar.update(len(out_rows))

    try:
        for row in iter_rows(input_path):
            if n > 1 and row.index % n != k - 1:
                continue
            selected += 1
            if selected <= skip:
                continue
            block.append(row)
            if len(block) >= block_rows:
                flush(block)
                block = []
        if block:
            flush(block)
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    summary.seconds = time.perf_counter() - started
    if selected < skip:
        log.warning("rescore: output had %d rows but the input selects only %d", skip, selected)
    return summary


__all__ = ["RescoreError", "RescoreSummary", "rescore_file", "parse_shard", "file_format", "text_problem"]
