"""Structured logging for flagstream's long-running commands.

- JSON lines on stderr when stderr is not a terminal (``log_format: auto``), readable text on a
  terminal; ``log_format: json|text`` forces either.
- Fields given with ``extra={...}`` become JSON keys (or ``key=value`` pairs in text mode).
- Lifecycle and errors log at INFO/WARNING/ERROR; one line per batch at DEBUG. Post text and
  usernames are never logged above DEBUG: the pipeline only ever logs ids, counts and offsets, and
  :class:`_RedactFilter` drops the fields ``text``/``author`` from any record above DEBUG as a
  backstop.
- Progress bars (transformers' "Loading weights") are switched off when the log is JSON: a bar is
  terminal animation, and in a log stream it is an unparseable line.
- One-shot commands (``produce``, ``review``, ``dlq``) pass ``kafka_level="CRITICAL"``: their one
  job either succeeds or ends with flagstream's own one-line error, and kafka-python's connection
  chatter before it (or its ``Metadata refresh: failed Cancelled`` on close) would only bury that line.
- kafka-python logs every failed reconnect at ERROR; during a broker outage that is a line every few
  milliseconds. :class:`_ThrottleFilter` lets each distinct kafka-python message through at most once
  per ``throttle_s`` seconds; flagstream's own lines say what is happening in words.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import datetime, timezone
from typing import Any, TextIO

_STD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message", "asctime"}
_SENSITIVE = frozenset({"text", "author", "username", "user"})


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STD_ATTRS and not k.startswith("_")}


def _exc_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """Full traceback for flagstream's own errors (bugs); one line for kafka-python's network errors,
    which are expected during an outage and would otherwise fill the log with stack traces."""
    assert record.exc_info
    if record.name.startswith("kafka"):
        exc = record.exc_info[1]
        return f"{type(exc).__name__}: {exc}"
    return formatter.formatException(record.exc_info)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in _extras(record).items():
            out[k] = v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else str(v)
        if record.exc_info and record.levelno >= logging.ERROR:
            out["exc"] = _exc_text(self, record)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%H:%M:%S", time.localtime(record.created))
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{ts} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extras:
            line += f"  [{extras}]"
        if record.exc_info and record.levelno >= logging.ERROR:
            exc = _exc_text(self, record)
            line += ("\n" + exc) if "\n" in exc else f"  ({exc})"
        return line


class _RedactFilter(logging.Filter):
    """Backstop: above DEBUG, drop any extra field that could carry post text or a username."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            for key in _SENSITIVE & set(vars(record)):
                setattr(record, key, "[redacted]")
        return True


class _ThrottleFilter(logging.Filter):
    """Let each distinct (logger, message template) through at most once per ``throttle_s``."""

    def __init__(self, throttle_s: float = 30.0) -> None:
        super().__init__()
        self.throttle_s = throttle_s
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("kafka"):
            return True
        if record.name == "kafka.net.selector" and "blocking the event loop" in str(record.msg) \
                and record.levelno < logging.ERROR and not logging.getLogger("kafka").isEnabledFor(logging.DEBUG):
            # kafka-python's own watchdog ("Task ... ran for 1.8s ... blocking the event loop"): on a busy
            # CPU it fires at start-up and says nothing an operator can act on.
            return False
        key = (record.name, str(record.msg)[:80])
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.throttle_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        n = self._suppressed.pop(key, 0)
        if n:
            record.suppressed_repeats = n
        if len(self._last) > 1000:  # bounded memory on hostile/odd inputs
            self._last.clear()
        return True


def setup_logging(level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None,
                  kafka_level: str | None = None, throttle_s: float = 30.0) -> None:
    """Configure the root logger once for a command (idempotent: replaces earlier handlers)."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "text" if getattr(stream, "isatty", lambda: False)() else "json"
    if fmt == "json":
        disable_progress_bars()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_RedactFilter())
    handler.addFilter(_ThrottleFilter(throttle_s))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # kafka-python is chatty at INFO (every connection, every rebalance step); its warnings and
    # errors still show, throttled. DEBUG on flagstream turns kafka-python to DEBUG too only if asked.
    logging.getLogger("kafka").setLevel(kafka_level or ("WARNING" if level != "DEBUG" else "INFO"))


def disable_progress_bars() -> None:
    """No tqdm bars from transformers / huggingface_hub, whether or not they are imported yet."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read by huggingface_hub (and so transformers) at import
    if "transformers" in sys.modules:
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except Exception:  # noqa: BLE001 - cosmetics must never stop a command
            pass


def one_shot_kafka_level(level: str) -> str | None:
    """kafka-python's level for one-shot commands: silent unless the user asked for DEBUG."""
    return None if level == "DEBUG" else "CRITICAL"


__all__ = ["setup_logging", "disable_progress_bars", "one_shot_kafka_level", "JsonFormatter", "TextFormatter"]
