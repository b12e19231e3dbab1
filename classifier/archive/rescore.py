"""Batch rescoring of archives: JSONL, CSV or Parquet in; JSONL or Parquet out, one row per input row.

Designed for archives far larger than memory: input is read in blocks (JSONL and CSV line by line,
Parquet by record batch), each block goes through :func:`~flagstream.classifier.archive.rows.rescore_block`
(the stream's post contract, then the same :class:`~flagstream.classifier.inference.scoring.Scorer`), and is written before
the next block is read; memory is bounded by the block size, not the archive size.

A run is planned before the model loads (:func:`plan_run`: files, formats, columns, the output's
run record), so a wrong path costs nothing. Its identity (input path, size and SHA-256 of its first
MiB, shard, model, thresholds, limits, formats) is written to ``OUTPUT.run.json``; ``resume=True``
refuses an output whose record differs, keeps only the complete output rows up to the first bad
one (see :mod:`flagstream.classifier.archive.files`), and checks that every row it skips has the input row number
and id the output says. ``shard=(k, n)`` keeps rows whose 0-based input row index is ``k-1`` mod
``n``: deterministic, balanced, and the union of the n shards' outputs is a single run's.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flagstream.classifier.archive.files import (
    JsonlOutput,
    ParquetOutput,
    RescoreError,
    count_rows,
    file_format,
    input_columns,
    iter_rows,
)
from flagstream.classifier.archive.rows import Limits, judge, rescore_block
from flagstream.classifier.inference.scoring import Scorer

HEAD_BYTES = 1 << 20  # how much of the input the run record hashes (with its size: cheap, and catches edits)
RUN_RECORD_KIND = "flagstream-rescore-run/1"


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """``"K/N"`` (1 <= K <= N) -> ``(K, N)``."""
    if value is None:
        return None
    k, sep, n = value.partition("/")
    if not sep or not k.strip().isdigit() or not n.strip().isdigit() or not 1 <= int(k) <= int(n):
        raise RescoreError(f"--shard expects K/N with 1 <= K <= N (e.g. 2/8), got {value!r}")
    return int(k), int(n)


def run_record_path(output: Path) -> Path:
    return output.with_name(output.name + ".run.json")


# ------------------------------------------------------------------------------------------
# Planning (no model needed)
# ------------------------------------------------------------------------------------------
@dataclass
class RunPlan:
    input: Path
    output: Path
    in_fmt: str
    out_fmt: str
    resume: bool
    shard: tuple[int, int] | None
    keep_text: bool
    limits: Limits
    record: dict[str, Any]  # this run's identity, without the model part
    previous: dict[str, Any] | None  # the output's run record when resuming one


def _head_sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.sha256(fh.read(HEAD_BYTES)).hexdigest()


def _describe(key: str, value: Any) -> str:
    if key == "shard":
        return "no --shard" if value is None else f"--shard {value}"
    if key == "input":
        return f"input {value.get('path')} ({value.get('size')} bytes, head sha256 {str(value.get('head_sha256'))[:12]})"
    return f"{key} {json.dumps(value, sort_keys=True)}"


def _check_record(output: Path, previous: dict[str, Any], current: dict[str, Any]) -> None:
    for key, value in current.items():
        if previous.get(key) != value:
            raise RescoreError(
                f"--resume: {output} was written with {_describe(key, previous.get(key))}, this run has "
                f"{_describe(key, value)}; resume with the same input and options, or write a new --output")


def plan_run(input_path: str | Path, output_path: str | Path, *, resume: bool = False,
             shard: tuple[int, int] | None = None, keep_text: bool = False, limits: Limits = Limits(),
             overwrite: bool = False) -> RunPlan:
    """Check everything about a run that needs no model; raise :class:`RescoreError` (one line) if wrong.

    An existing output is replaced only with ``overwrite`` and continued only with ``resume``: a rescore
    never destroys earlier results because a path was reused by mistake (issue 29).

    Raises:
        RescoreError: the input, the output path, the output's state or the resume record is wrong.
    """
    if resume and overwrite:
        raise RescoreError("--resume continues an output and --overwrite replaces it; pass one of them")
    inp, out = Path(input_path), Path(output_path)
    if not inp.is_file():
        raise RescoreError(f"input {inp} does not exist or is not a file")
    in_fmt = file_format(inp)
    out_fmt = file_format(out, output=True)
    if inp.resolve() == out.resolve():
        raise RescoreError("--output must differ from the input file")
    if out.is_dir():
        raise RescoreError(f"--output {out} is a directory; name a .jsonl or .parquet file")
    parent = out.resolve().parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise RescoreError(f"--output {out}: cannot create files in {existing or parent}")
    try:
        columns = input_columns(inp)
    except Exception as exc:  # noqa: BLE001 - any unreadable header/footer is the user's file, not a crash
        raise RescoreError(f"input {inp}: cannot read it as {in_fmt} ({type(exc).__name__}: "
                           f"{' '.join(str(exc).split())[:200]})") from None
    if columns is not None:
        missing = [c for c in ("id", "text") if c not in columns]
        if missing:
            raise RescoreError(f"input {inp} has no {' or '.join(repr(c) for c in missing)} column "
                               f"(it has {len(columns)}: {', '.join(columns[:8])}{', ...' if len(columns) > 8 else ''});"
                               f" rename the post id/text columns to 'id' and 'text'")
    record = {
        "kind": RUN_RECORD_KIND,
        "input": {"path": str(inp.resolve()), "size": inp.stat().st_size, "head_sha256": _head_sha256(inp)},
        "input_format": in_fmt, "output_format": out_fmt,
        "shard": f"{shard[0]}/{shard[1]}" if shard else None,
        "keep_text": keep_text, "max_text_chars": limits.max_text_chars,
        "max_message_bytes": limits.max_message_bytes,
    }
    previous = None
    rec_path = run_record_path(out)
    has_output = out.exists() or out.with_name(out.name + ".parts").exists()
    if has_output and not resume and not overwrite:
        raise RescoreError(f"--output {out} already exists; pass --overwrite to replace it, --resume to continue an "
                           "interrupted run into it, or choose a new path")
    if resume and has_output:
        try:
            previous = json.loads(rec_path.read_text(encoding="utf-8"))
            if not isinstance(previous, dict) or previous.get("kind") != RUN_RECORD_KIND:
                raise ValueError("not a run record")
        except FileNotFoundError:
            raise RescoreError(f"--resume: {out} has no run record ({rec_path.name}), so what it holds can't be "
                               f"checked; rescore into a new --output") from None
        except (ValueError, OSError) as exc:
            raise RescoreError(f"--resume: {rec_path} is unreadable ({exc}); rescore into a new --output") from None
        _check_record(out, previous, record)
    return RunPlan(inp, out, in_fmt, out_fmt, resume and has_output, shard, keep_text, limits, record, previous)


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
    error_classes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def posts_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def all_failed(self) -> bool:
        return self.rows > 0 and self.scored == 0

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "resumed_from": self.resumed_from, "scored": self.scored,
                "errors": self.errors, "error_classes": dict(self.error_classes), "flagged": dict(self.flagged),
                "seconds": round(self.seconds, 3), "posts_per_s": round(self.posts_per_s, 1)}

    def lines(self) -> list[str]:
        flagged = ", ".join(f"{k} {v}" for k, v in self.flagged.items())
        head = f"rescored {self.rows} rows in {self.seconds:.1f}s ({self.posts_per_s:.1f} posts/s)"
        if self.resumed_from:
            head += f", after {self.resumed_from} rows from an earlier run"
        classes = ", ".join(f"{k} {v}" for k, v in sorted(self.error_classes.items(), key=lambda kv: -kv[1]))
        return [head, f"flagged: {flagged or 'none'}", f"errors: {self.errors}" + (f" ({classes})" if classes else "")]


def _verify_skipped(plan: RunPlan, recovered: Iterator[tuple[int, str | None]], rows: Iterator, skip: int) -> None:
    """Check that the output's first ``skip`` rows are the input rows the run skips: same row, same id."""
    for n, ((out_row, out_id), row) in enumerate(zip(recovered, rows), start=1):
        got = judge(row, plan.limits).id
        if out_row != row.index or out_id != got:
            what = "row number" if out_row != row.index else "post id"
            raise RescoreError(f"--resume: output row {n} of {plan.output} has input row {out_row}, but this run's "
                               f"row {n} is input row {row.index} and its {what} differs; the output doesn't belong "
                               f"to this input: rescore into a new --output")
        if n == skip:
            return
    raise RescoreError(f"--resume: {plan.output} has {skip} rows but the input selects fewer; the output doesn't "
                       f"belong to this input: rescore into a new --output")


def _selected(plan: RunPlan) -> Iterator:
    k, n = plan.shard or (1, 1)
    for row in iter_rows(plan.input, max_message_bytes=plan.limits.max_message_bytes):
        if n == 1 or row.index % n == k - 1:
            yield row


def execute(plan: RunPlan, scorer: Scorer, *, block_rows: int = 2048, progress: bool | None = None) -> RescoreSummary:
    """Run a planned rescoring with a loaded scorer."""
    info = scorer.info
    record = {**plan.record, "model": info.ref, "thresholds": {k: float(v) for k, v in info.thresholds.items()}}
    if plan.previous is not None:
        _check_record(plan.output, plan.previous, record)
    writer: JsonlOutput | ParquetOutput
    try:
        if plan.out_fmt == "jsonl":
            writer = JsonlOutput(plan.output, plan.resume)
        else:
            writer = ParquetOutput(plan.output, plan.resume, info.labels, plan.keep_text)
        if plan.previous is None:  # a new output: say what it is before the first row lands
            tmp = run_record_path(plan.output).with_suffix(".tmp")
            tmp.write_text(json.dumps(record, indent=1, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
            tmp.replace(run_record_path(plan.output))
    except OSError as exc:
        raise RescoreError(f"--output {plan.output}: {exc.strerror or exc}") from None

    summary = RescoreSummary(resumed_from=writer.done, flagged={lab: 0 for lab in info.labels})
    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show:
        from tqdm import tqdm

        total = count_rows(plan.input)
        if total is not None and plan.shard:
            total = len(range(plan.shard[0] - 1, total, plan.shard[1]))
        bar = tqdm(total=total, initial=writer.done, unit="post", dynamic_ncols=True, file=sys.stderr)

    started = time.perf_counter()
    rows = _selected(plan)
    where = "reading the input"
    block: list = []
    try:
        if writer.done:
            _verify_skipped(plan, writer.recovered(), rows, writer.done)
        for row in rows:
            block.append(row)
            if len(block) >= block_rows:
                where = "writing the output"
                _write(writer, rescore_block(block, scorer, limits=plan.limits, keep_text=plan.keep_text), summary)
                where, block = "reading the input", []
                if bar is not None:
                    bar.update(block_rows)
        if block:
            where = "writing the output"
            _write(writer, rescore_block(block, scorer, limits=plan.limits, keep_text=plan.keep_text), summary)
            if bar is not None:
                bar.update(len(block))
        where = "writing the output"
        writer.finish()
    except RescoreError:
        writer.abort()
        raise
    except (OSError, EOFError, ValueError, csv.Error, zlib.error) as exc:
        # A corrupt gzip/Parquet/CSV stream or a full disk: one line. Rows read before a read error are
        # still scored and written, so everything readable is in the output (and it stays resumable).
        if where == "reading the input" and block:
            try:
                _write(writer, rescore_block(block, scorer, limits=plan.limits, keep_text=plan.keep_text), summary)
                writer.finish()
            except (OSError, ValueError):
                pass
        writer.abort()
        raise RescoreError(f"{where} ({plan.input if where.endswith('input') else plan.output}) failed after "
                           f"{summary.resumed_from + summary.rows} rows were written: {type(exc).__name__}: "
                           f"{' '.join(str(exc).split())[:200]}") from None
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _write(writer: JsonlOutput | ParquetOutput, out_rows: list[dict[str, Any]], summary: RescoreSummary) -> None:
    writer.write(out_rows)
    summary.rows += len(out_rows)
    for r in out_rows:
        if "error" in r:
            summary.errors += 1
            summary.error_classes[r["error"]] = summary.error_classes.get(r["error"], 0) + 1
        else:
            summary.scored += 1
            for lab in r["labels"]:
                summary.flagged[lab] += 1


def rescore_file(scorer: Scorer, input_path: str | Path, output_path: str | Path, *, resume: bool = False,
                 shard: tuple[int, int] | None = None, block_rows: int = 2048, keep_text: bool = False,
                 max_text_chars: int = 10_000, max_message_bytes: int = 1_000_000,
                 progress: bool | None = None, overwrite: bool = False) -> RescoreSummary:
    """Score every row of ``input_path`` into ``output_path`` (:func:`plan_run` then :func:`execute`)."""
    plan = plan_run(input_path, output_path, resume=resume, shard=shard, keep_text=keep_text,
                    limits=Limits(max_text_chars, max_message_bytes), overwrite=overwrite)
    return execute(plan, scorer, block_rows=block_rows, progress=progress)


__all__ = ["RescoreError", "RescoreSummary", "RunPlan", "plan_run", "execute", "rescore_file", "parse_shard",
           "file_format", "run_record_path"]
