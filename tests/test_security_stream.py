"""``flagstream stream`` itself must fail fast, with one line, on a TLS or SASL misconfiguration.

The pipeline's start-up retries an *unreachable* broker with backoff until ``startup_timeout_s``
(20 s here); a certificate that will never be trusted or credentials that will never be accepted
are not worth retrying, and "broker unreachable" would be the wrong diagnosis. The process is
run the way an operator runs it (``FLAGSTREAM_*`` environment), and must exit with code 2 and
one error line well before the start-up timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flagstream.streaming.kafka.broker import free_port
from support.process import ROOT
from support.tls import CertBundle, Stunnel, TlsFrontedBroker, needs_stunnel, require_certs
from support.tls import stunnel_present  # noqa: F401 - fixture behind needs_stunnel

pytestmark = pytest.mark.timeout(180)
FAST_S = 15.0  # includes interpreter start and model load; the start-up timeout is 20 s


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertBundle:
    return require_certs(tmp_path_factory.mktemp("certs"))


def run_stream(env_extra: dict[str, str], model_dir: Path) -> tuple[int, str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGSTREAM_")}
    env.update({"HF_HUB_OFFLINE": "1", "FLAGSTREAM_MODEL": str(model_dir), "FLAGSTREAM_STARTUP_TIMEOUT_S": "20",
                "FLAGSTREAM_LOG_FORMAT": "json", "FLAGSTREAM_GROUP_ID": "g-sec", **env_extra})
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "flagstream.cli", "stream"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return -1, "", time.monotonic() - t0
    return proc.returncode, proc.stderr, time.monotonic() - t0


def error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("flagstream stream: error:")]
    assert len(lines) == 1, f"expected exactly one error line, stderr was:\n{stderr[-3000:]}"
    assert "Traceback" not in stderr
    return lines[0]


@needs_stunnel
def test_stream_fails_fast_on_untrusted_certificate(tmp_path, certs, linear_model_dir) -> None:
    broker_port = free_port()
    with Stunnel(certs, connect_port=broker_port, workdir=tmp_path) as tunnel:
        broker = TlsFrontedBroker(port=broker_port, advertised_port=tunnel.accept_port,
                                  ready_bootstrap=tunnel.address,
                                  ready_kwargs={"security_protocol": "SSL", "ssl_cafile": str(certs.ca_cert)})
        broker.start()
        try:
            code, stderr, took = run_stream({"FLAGSTREAM_BOOTSTRAP_SERVERS": tunnel.address,
                                             "FLAGSTREAM_SECURITY_PROTOCOL": "SSL",
                                             "FLAGSTREAM_SSL_CAFILE": str(certs.other_ca_cert)}, linear_model_dir)
        finally:
            broker.stop()
    print(f"\nstream with an untrusted CA: exit {code} after {took:.1f}s")
    assert code == 2, f"exit {code} after {took:.1f}s:\n{stderr[-3000:]}"
    line = error_line(stderr)
    assert "not trusted" in line and "ssl_cafile" in line
    assert took < FAST_S


def test_stream_fails_fast_on_wrong_scram_credentials(tmp_path, linear_model_dir) -> None:
    broker = TlsFrontedBroker(extra_args=["--authentication"], log_path=tmp_path / "broker.log").start()
    try:
        code, stderr, took = run_stream({"FLAGSTREAM_BOOTSTRAP_SERVERS": broker.bootstrap,
                                         "FLAGSTREAM_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                                         "FLAGSTREAM_SASL_MECHANISM": "SCRAM-SHA-512",
                                         "FLAGSTREAM_SASL_USERNAME": "mallory",
                                         "FLAGSTREAM_SASL_PASSWORD": "wrong-password"}, linear_model_dir)
    finally:
        broker.stop()
    print(f"\nstream with wrong SCRAM credentials: exit {code} after {took:.1f}s")
    assert code == 2, f"exit {code} after {took:.1f}s:\n{stderr[-3000:]}"
    line = error_line(stderr)
    assert "authentication failed" in line and "mallory" in line
    assert "wrong-password" not in stderr
    assert took < FAST_S


@needs_stunnel
def test_stream_scores_over_tls(tmp_path, certs, linear_model_dir) -> None:
    """The whole pipeline over TLS: ``flagstream stream`` configured with security_protocol SSL and
    the test CA, posts published and verdicts read back over TLS as well."""
    from kafka import KafkaConsumer, KafkaProducer

    from flagstream.config import Settings
    from support.process import StreamProcess
    from support.topics import TopicSet

    broker_port = free_port()
    with Stunnel(certs, connect_port=broker_port, workdir=tmp_path) as tunnel:
        broker = TlsFrontedBroker(port=broker_port, advertised_port=tunnel.accept_port,
                                  ready_bootstrap=tunnel.address,
                                  ready_kwargs={"security_protocol": "SSL", "ssl_cafile": str(certs.ca_cert)})
        broker.start()
        topics = TopicSet.unique(tunnel.address, linear_model_dir, "tls", partitions=4, create=False)
        env = topics.env(topic_partitions=4, security_protocol="SSL", ssl_cafile=certs.ca_cert)
        logs = tmp_path / "logs"
        logs.mkdir()
        proc = StreamProcess(env, logs, "tls").start()
        kw = Settings(bootstrap_servers=tunnel.address, security_protocol="SSL", ssl_cafile=certs.ca_cert).kafka_common()
        try:
            producer = KafkaProducer(**kw, acks="all")
            ids = [f"tls{i:04d}" for i in range(200)]
            for pid in ids:
                producer.send(topics.posts, key=pid.encode(),
                              value=f'{{"id": "{pid}", "text": "the weather is lovely {pid}"}}'.encode())
            producer.flush(30)
            producer.close(5)
            seen: set[str] = set()
            consumer = KafkaConsumer(**kw, group_id=None, auto_offset_reset="earliest", consumer_timeout_ms=2000)
            deadline = time.monotonic() + 90
            try:
                while len(seen) < len(ids) and time.monotonic() < deadline:
                    assert proc.alive, proc.logs()[-3000:]
                    if topics.scores in (consumer.topics() or set()) and not consumer.subscription():
                        consumer.subscribe([topics.scores])
                    if consumer.subscription():
                        for rec in consumer:
                            seen.add(rec.key.decode())
                    else:
                        time.sleep(0.5)
            finally:
                consumer.close()
            assert seen >= set(ids), f"{len(set(ids) - seen)} posts not scored over TLS\n{proc.logs()[-3000:]}"
            assert proc.terminate(45) == 0
        finally:
            proc.kill()
            broker.stop()
