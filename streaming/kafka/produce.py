"""Publishing a file of posts to the posts topic (``flagstream produce``, the demo, the tests).

JSONL: one record per non-blank line, the line's bytes sent exactly as they are (without the line
break), so a malformed line reaches the pipeline and its dead-letter topic just as it would from any
other producer. The key is the post id when the line is a JSON object with a string ``id``, else none.

CSV: a header row naming the fields (``id`` and ``text`` required; ``lang``, ``author``,
``created_at``, ``url`` and any other column optional; a ``meta`` column holding a JSON object is
parsed). Each row becomes one JSON object; empty cells are left out.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaProducer


@dataclass
class ProduceResult:
    published: int = 0
    without_id: int = 0


def iter_jsonl(lines: Iterable[bytes]) -> Iterator[tuple[bytes | None, bytes]]:
    for raw in lines:
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            continue
        yield _key_for(line), line


def _key_for(value: bytes) -> bytes | None:
    try:
        obj = json.loads(value)
    except (ValueError, RecursionError):
        return None
    if isinstance(obj, dict) and isinstance(obj.get("id"), str) and obj["id"]:
        try:
            return obj["id"].encode("utf-8")
        except UnicodeEncodeError:
            return None
    return None


def iter_csv(text: str) -> Iterator[tuple[bytes | None, bytes]]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"id", "text"} <= set(reader.fieldnames):
        from flagstream.errors import UserError

        raise UserError("CSV needs a header row with at least the columns id and text")
    for row in reader:
        obj: dict[str, object] = {}
        for k, v in row.items():
            if k is None or v is None or v == "":
                continue
            if k == "meta":
                try:
                    meta = json.loads(v)
                    obj[k] = meta if isinstance(meta, dict) else v
                except ValueError:
                    obj[k] = v
            else:
                obj[k] = v
        value = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        yield _key_for(value), value


def read_records(path: str | Path) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) pairs from a .jsonl/.json/.csv file, or JSONL on stdin for ``-``."""
    if str(path) == "-":
        yield from iter_jsonl(sys.stdin.buffer)
        return
    p = Path(path)
    from flagstream.errors import UserError

    if not p.is_file():
        raise UserError(f"{p} does not exist or is not a file")
    if p.suffix.lower() == ".csv":
        try:
            yield from iter_csv(p.read_text(encoding="utf-8-sig"))
        except UnicodeDecodeError:
            raise UserError(f"{p} is not UTF-8 text") from None
        return
    with p.open("rb") as fh:
        yield from iter_jsonl(fh)


def publish(producer: KafkaProducer, topic: str, records: Iterable[tuple[bytes | None, bytes]],
            timeout_s: float = 60.0) -> ProduceResult:
    """Send every record, then flush and check every acknowledgement."""
    result = ProduceResult()
    futures = []
    for key, value in records:
        futures.append(producer.send(topic, key=key, value=value))
        result.published += 1
        result.without_id += key is None
    producer.flush(timeout=timeout_s)
    for f in futures:
        f.get(timeout=timeout_s)
    return result


__all__ = ["ProduceResult", "iter_jsonl", "iter_csv", "read_records", "publish"]
