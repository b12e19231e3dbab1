"""SASL configuration errors read true, against a real broker started with ``--authentication``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flagstream.config import ConfigError, load_settings
from flagstream.streaming.kafka.broker import free_port
from flagstream.streaming.kafka.security import TransportSecurityError, ensure_transport
from support.tls import TlsFrontedBroker

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def auth_broker(tmp_path_factory: pytest.TempPathFactory):
    broker = TlsFrontedBroker(port=free_port(), extra_args=["--authentication"],
                              log_path=tmp_path_factory.mktemp("sasl-msg") / "broker.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_refused_mechanism_is_never_said_to_be_offered(auth_broker) -> None:
    """Tansu answers UNSUPPORTED_SASL_MECHANISM with the *requested* name as its list, which used to
    read "does not offer SASL mechanism X (it offers: X)". The mapping form bypasses the config's
    upper-casing, as a kafka-python kwargs dict would."""
    kw = {"bootstrap_servers": [auth_broker.bootstrap], "security_protocol": "SASL_PLAINTEXT",
          "sasl_mechanism": "scram-sha-256", "sasl_plain_username": "alice", "sasl_plain_password": "pw"}
    with pytest.raises(TransportSecurityError) as err:
        ensure_transport(kw, timeout_s=3.0)
    msg = str(err.value)
    assert "(it offers:" not in msg and "refused SASL mechanism 'scram-sha-256'" in msg, msg
    assert "upper case" in msg and "\n" not in msg


def test_mechanism_names_are_upper_cased_and_oauthbearer_is_stated_unsupported() -> None:
    s = load_settings(None, {"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_mechanism": "scram-sha-512"},
                      environ={})
    assert s.sasl_mechanism == "SCRAM-SHA-512"
    with pytest.raises(ConfigError) as err:
        load_settings(None, {"security_protocol": "SASL_SSL", "sasl_username": "u"},
                      environ={"FLAGSTREAM_SASL_MECHANISM": "OAUTHBEARER"})
    assert "OAUTHBEARER is not supported" in str(err.value) and "\n" not in str(err.value)
    res = subprocess.run([sys.executable, "-m", "flagstream.cli", "config", "show", "--sasl-mechanism", "OAUTHBEARER"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and len(res.stderr.splitlines()) == 1 and "OAUTHBEARER is not supported" in res.stderr
