"""Archive files for ``flagstream rescore``: reading input rows, writing (and recovering) output rows.

Readers yield :class:`~flagstream.classifier.archive.rows.InputRow` with bounded memory: JSONL line by line as
raw bytes (a line longer than ``max_message_bytes`` is never held whole), CSV row by row, Parquet
record batch by record batch. Writers append output rows and, for ``--resume``, recover what an
interrupted run left: every line/part is checked, and the first one that is not a complete output
row ends what counts as done (it and everything after it are redone).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from flagstream.classifier.archive.rows import InputRow, output_schema, to_parquet_row
from flagstream.contract.records import Rejection
from flagstream.errors import UserError

log = logging.getLogger(__name__)

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz")
CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
PART_ROWS = 16_384  # rows per Parquet part file: the most a crash can cost on resume
BOM = b"\xef\xbb\xbf"


class RescoreError(UserError, ValueError):
    """A problem with the files or options of a rescoring run, phrased for the user in one line."""


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


# ------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------
def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb")


def _iter_jsonl(path: Path, max_message_bytes: int) -> Iterator[InputRow]:
    """Each non-blank line is one posts-topic value (its bytes, undecoded); blank lines are not rows."""
    index = 0
    first = True
    with _open_binary(path) as fh:
        while True:
            line = fh.readline(max_message_bytes + 3)  # value + "\r\n" + 1: more means oversized
            if not line:
                return
            if first and line.startswith(BOM):  # a file's byte-order mark is not part of its first record
                line = line[len(BOM):]
            first = False
            if not line.endswith(b"\n") and len(line) == max_message_bytes + 3:
                size = len(line)
                while (chunk := fh.readline(1 << 20)) and not chunk.endswith(b"\n"):
                    size += len(chunk)
                size += len(chunk.rstrip(b"\r\n"))
                yield InputRow(index, Rejection("message_too_large", f"value is {size} bytes, over "
                                                                     f"max_message_bytes={max_message_bytes}"))
                index += 1
                continue
            value = line[:-1] if line.endswith(b"\n") else line
            value = value[:-1] if value.endswith(b"\r") else value
            if not value.strip():
                continue
            yield InputRow(index, value)
            index += 1


def _bounded_lines(fh: IO[str], max_line_chars: int, max_field_chars: int) -> Iterator[str]:
    """The file's lines, none held longer than ``max_line_chars``: an over-long physical line is skipped
    and replaced by one line whose single cell is just over the field limit, so the CSV reader refuses it
    (a ``message_too_large`` dead letter) at a cost of ``max_field_chars``, not of the line."""
    while True:
        line = fh.readline(max_line_chars + 1)
        if not line:
            return
        if len(line) > max_line_chars and line[-1] not in "\r\n":
            while (rest := fh.readline(max_line_chars)) and rest[-1] not in "\r\n":
                pass
            yield "x" * (max_field_chars + 1) + "\n"
            continue
        yield line


def _csv_reader(path: Path, max_field_chars: int = 1_000_000) -> tuple[IO[str], csv.DictReader]:
    # The limits bound memory per row: a line, then each cell, is accumulated whole before any check (a 1 GiB
    # field limit once let a 150 MB field take 892 MB). No post over max_message_bytes is scored anyway, so no
    # cell needs more than that, nor a row more than twice that.
    csv.field_size_limit(max_field_chars)
    raw = _open_binary(path)
    # surrogateescape: invalid UTF-8 survives as \udcXX and the row is rejected as not_utf8, like the stream
    fh = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
    return fh, csv.DictReader(_bounded_lines(fh, 2 * max_field_chars, max_field_chars))


def _iter_csv(path: Path, max_field_chars: int = 1_000_000) -> Iterator[InputRow]:
    """CSV rows; a row with a cell over ``max_field_chars`` becomes a ``message_too_large`` rejection (a dead
    letter in the output, like an over-long JSONL line) and reading goes on with the next line."""
    fh, reader = _csv_reader(path, max_field_chars)
    with fh:
        index = 0
        while True:
            try:
                rec = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                if "field larger than field limit" not in str(exc):
                    raise
                yield InputRow(index, Rejection("message_too_large", f"a CSV cell over {max_field_chars} characters "
                                                                     f"or a row over {2 * max_field_chars} "
                                                                     "(max_message_bytes)"))
                index += 1
                continue
            rec.pop(None, None)  # cells beyond the header
            yield InputRow(index, dict(rec))
            index += 1


def _iter_parquet(path: Path, block: int) -> Iterator[InputRow]:
    import pyarrow.parquet as pq

    index = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=block):
        for rec in batch.to_pylist():
            yield InputRow(index, rec)
            index += 1


def iter_rows(path: Path, *, max_message_bytes: int = 1_000_000, block: int = 4096) -> Iterator[InputRow]:
    fmt = file_format(path)
    if fmt == "jsonl":
        return _iter_jsonl(path, max_message_bytes)
    if fmt == "csv":
        return _iter_csv(path, max_message_bytes)
    return _iter_parquet(path, block)


def input_columns(path: Path) -> list[str] | None:
    """The column names of a CSV header or Parquet schema (None for JSONL, whose rows are objects)."""
    fmt = file_format(path)
    if fmt == "csv":
        fh, reader = _csv_reader(path)
        with fh:
            return list(reader.fieldnames or [])
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    return None


def count_rows(path: Path) -> int | None:
    """Rows in the input when cheap to know (Parquet metadata, uncompressed JSONL), else None."""
    fmt = file_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if fmt == "jsonl" and not path.name.endswith(".gz"):
        with path.open("rb") as fh:
            return sum(bool(line.strip()) for line in fh)
    return None


# ------------------------------------------------------------------------------------------
# Writing and recovering
# ------------------------------------------------------------------------------------------
def _is_output_row(obj: Any) -> bool:
    return (isinstance(obj, dict) and isinstance(obj.get("row"), int) and not isinstance(obj.get("row"), bool)
            and isinstance(obj.get("model"), str) and ("scores" in obj or "error" in obj)
            and (obj.get("id") is None or isinstance(obj.get("id"), str)))


class JsonlOutput:
    """Appends one JSON line per row, flushed per block. Resume keeps the complete, valid lines up to
    the first one that is not (torn, corrupt, foreign): it and everything after it are redone."""

    def __init__(self, path: Path, resume: bool) -> None:
        self.path = path
        self.done = self._recover() if resume and path.exists() else 0
        if not resume or not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
        self.fh = path.open("ab")

    def _recover(self) -> int:
        good, end = 0, 0
        with self.path.open("rb") as fh:
            for line in fh:
                try:
                    ok = line.endswith(b"\n") and _is_output_row(json.loads(line))
                except (ValueError, RecursionError):
                    ok = False
                if not ok:
                    break
                good += 1
                end += len(line)
            size = fh.seek(0, io.SEEK_END)
        if end != size:
            log.warning("rescore: output line %d of %s is not a complete output row; it and the %d bytes after "
                        "it are redone", good + 1, self.path.name, size - end)
            with self.path.open("r+b") as fh:
                fh.truncate(end)
        return good

    def recovered(self) -> Iterator[tuple[int, str | None]]:
        """(input row, id) of every row counted as done, in order."""
        with self.path.open("rb") as fh:
            for _, line in zip(range(self.done), fh):
                obj = json.loads(line)
                yield obj["row"], obj.get("id")

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        buf = "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows)
        self.fh.write(buf.encode("utf-8"))
        self.fh.flush()

    def finish(self) -> None:
        self.fh.close()

    def abort(self) -> None:
        self.fh.close()


class ParquetOutput:
    """Closed part files in ``OUTPUT.parts/`` (one fixed schema, :func:`output_schema`), merged into
    ``OUTPUT`` (streamed) on success. Resume keeps the readable parts up to the first unreadable one."""

    def __init__(self, path: Path, resume: bool, labels: Sequence[str], keep_text: bool) -> None:
        import pyarrow as pa

        self.pa = pa
        self.path = path
        self.parts = path.with_name(path.name + ".parts")
        self.schema = output_schema(labels, keep_text)
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
        parts = self._part_files()
        for i, part in enumerate(parts):
            try:
                pf = pq.ParquetFile(part)
                ok = pf.schema_arrow.equals(self.schema)
            except Exception:  # noqa: BLE001 - a part torn by the crash (or not ours)
                ok = False
            if not ok:
                log.warning("rescore: part %s of %s is unreadable or foreign; it and the %d parts after it are "
                            "redone", part.name, self.path.name, len(parts) - i - 1)
                for later in parts[i:]:
                    later.unlink()
                break
            rows += pf.metadata.num_rows
        for tmp in self.parts.glob("*.tmp"):
            tmp.unlink()
        return rows

    def recovered(self) -> Iterator[tuple[int, str | None]]:
        import pyarrow.parquet as pq

        for part in self._part_files():
            table = pq.read_table(part, columns=["row", "id"])
            yield from zip(table.column("row").to_pylist(), table.column("id").to_pylist())

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        self.buffer.extend(to_parquet_row(r) for r in rows)
        while len(self.buffer) >= PART_ROWS:
            self._flush(self.buffer[:PART_ROWS])
            del self.buffer[:PART_ROWS]

    def _flush(self, rows: Sequence[dict[str, Any]]) -> None:
        import pyarrow.parquet as pq

        if not rows:
            return
        table = self.pa.Table.from_pylist(list(rows), schema=self.schema)
        final = self.parts / f"part-{len(self._part_files()):06d}.parquet"
        tmp = final.with_suffix(".tmp")
        pq.write_table(table, tmp)
        tmp.rename(final)  # a part is either complete or absent

    def finish(self) -> None:
        import pyarrow.parquet as pq

        self._flush(self.buffer)
        self.buffer = []
        tmp = self.path.with_name(self.path.name + ".tmp")
        with pq.ParquetWriter(tmp, self.schema) as writer:
            for part in self._part_files():
                pf = pq.ParquetFile(part)
                for g in range(pf.num_row_groups):
                    writer.write_table(pf.read_row_group(g))
        tmp.replace(self.path)
        shutil.rmtree(self.parts, ignore_errors=True)

    def abort(self) -> None:
        """Keep only complete parts: buffered rows are redone on resume."""
        self.buffer = []


__all__ = ["RescoreError", "file_format", "iter_rows", "input_columns", "count_rows", "JsonlOutput",
           "ParquetOutput", "PART_ROWS"]
