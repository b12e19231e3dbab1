"""The one ``flagstream stream`` subprocess wrapper, an in-process pipeline, and ``run_cli``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from flagstream.streaming.kafka.broker import free_port
from support.kafka import metric_value

ROOT = Path(__file__).resolve().parents[2]


class StreamProcess:
    """``python -m flagstream.cli stream`` as a child process in its own process group.

    Configured through ``FLAGSTREAM_*`` variables only. Each :meth:`start` (the first, or a restart
    after :meth:`kill`) logs to ``<log_dir>/<name>-<n>.log`` and serves metrics/health on a fresh port.
    :meth:`kill` is a real SIGKILL of the whole group; :meth:`terminate` is SIGTERM (the graceful stop).
    """

    def __init__(self, env: dict[str, str], log_dir: Path, name: str = "stream", args: list[str] | None = None) -> None:
        self.env, self.log_dir, self.name, self.args = dict(env), Path(log_dir), name, list(args or [])
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.metrics_port = 0

    def start(self) -> "StreamProcess":
        self.starts += 1
        self.metrics_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGSTREAM_")}
        env.update(self.env)
        env["FLAGSTREAM_METRICS_PORT"] = str(self.metrics_port)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("OMP_NUM_THREADS", "1")
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log_dir / f"{self.name}-{self.starts}.log", "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "flagstream.cli", "stream", *self.args], cwd=ROOT,
                                         env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, no leave-group."""
        if self.alive:
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it doesn't exit in time. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def wait(self, timeout_s: float) -> int:
        """Until it exits by itself; AssertionError (and SIGKILL) if it doesn't."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not exit within {timeout_s:g}s:\n{self.logs()[-3000:]}") from None

    # --- HTTP: /metrics, /healthz, /readyz ----------------------------------------------------
    def get(self, path: str, timeout_s: float = 2.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=timeout_s) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metric(self, name: str, labels: str = "") -> float:
        """One sample of /metrics (0.0 while the server is not up yet)."""
        try:
            return metric_value(self.get("/metrics")[1], name, labels)
        except OSError:
            return 0.0

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until /readyz answers 200 (group joined, model loaded, broker reachable, delivering, scoring)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive:
                raise AssertionError(f"{self.name} exited before ready:\n{self.logs()[-3000:]}")
            try:
                if self.get("/readyz", 1.0)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.name} not ready after {timeout_s:g}s:\n{self.logs()[-3000:]}")

    def wait_metric(self, name: str, at_least: float, timeout_s: float, labels: str = "") -> float:
        """Until a metric reaches ``at_least`` (a counter moved): the test's evidence, not a sleep."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.metric(name, labels)
            if value >= at_least:
                return value
            if time.monotonic() > deadline or not self.alive:
                raise AssertionError(f"{self.name}: {name} = {value}, expected >= {at_least}:\n{self.logs()[-2500:]}")
            time.sleep(0.1)

    # --- logs and resources -------------------------------------------------------------------
    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob(f"{self.name}-*.log")))

    def log_records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.logs().splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def cpu_seconds(self) -> float:
        """User+system CPU time of the process so far (Linux /proc)."""
        with open(f"/proc/{self.pid}/stat") as fh:
            parts = fh.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0


def tail(text: str, n: int = 2500) -> str:
    return text[-n:]


def assert_running(*procs: StreamProcess) -> None:
    """Fail with the process log when a pipeline process died on its own."""
    for p in procs:
        if p.proc is not None and p.proc.poll() is not None:
            raise AssertionError(f"{p.name} exited with code {p.proc.returncode} on its own:\n{tail(p.logs())}")


class PipelineThread:
    """``flagstream.streaming.loop.pipeline.Pipeline.run`` on a background thread; ``stop()`` is the SIGTERM path."""

    def __init__(self, settings: Any, scorer: Any = None, **kwargs: Any) -> None:
        from flagstream.streaming.loop.pipeline import Pipeline

        self.pipeline = Pipeline(settings, scorer, **kwargs)
        self.error: BaseException | None = None
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="test-pipeline")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.exit_code = self.pipeline.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in stop()
            self.error = exc

    def wait_assigned(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.pipeline.batcher is None and time.monotonic() < deadline and self.error is None:
            time.sleep(0.05)
        batcher = self.pipeline.batcher
        if batcher is None or not batcher.assigned.wait(max(0.0, deadline - time.monotonic())):
            raise AssertionError(f"pipeline got no partitions within {timeout_s:g}s (error: {self.error!r})")

    def stop(self, timeout_s: float = 60.0) -> int | None:
        self.pipeline.request_stop("test finished")
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            raise AssertionError("pipeline thread did not stop")
        if self.error is not None:
            raise self.error
        return self.exit_code


def run_cli(args: list[str], env: dict[str, str] | None = None, timeout_s: float = 60.0,
            input_bytes: bytes | None = None) -> subprocess.CompletedProcess:
    """``flagstream ARGS`` as a subprocess (stdout/stderr captured)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLAGSTREAM_")}
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "flagstream.cli", *args], env=base, cwd=ROOT,
                          capture_output=True, timeout=timeout_s, input=input_bytes)
