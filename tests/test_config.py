"""Config precedence and one-line errors: YAML < FLAGSTREAM_* env < CLI flags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flagstream.config import ConfigError, load_settings


def test_precedence_yaml_env_cli(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("batch_size: 8\ngroup_id: from-yaml\nposts_topic: yaml-topic\n")
    env = {"FLAGSTREAM_BATCH_SIZE": "16", "FLAGSTREAM_GROUP_ID": "from-env"}
    s = load_settings(cfg, {"group_id": "from-cli"}, environ=env)
    assert s.posts_topic == "yaml-topic"
    assert s.batch_size == 16
    assert s.group_id == "from-cli"


def test_thresholds_from_env() -> None:
    s = load_settings(None, environ={"FLAGSTREAM_THRESHOLDS": "propaganda=0.7,sectarian=0.6"})
    assert s.thresholds == {"propaganda": 0.7, "sectarian": 0.6}


@pytest.mark.parametrize(
    ("yaml_text", "env", "needle"),
    [
        ("batch_size: lots\n", {}, "invalid value for batch_size"),
        ("bach_size: 3\n", {}, "unknown config key 'bach_size'"),
        ("sasl_password: hunter2\n", {}, "secrets don't belong in YAML"),
        ("batch_size: [\n", {}, "not valid YAML"),
        ("", {"FLAGSTREAM_THRESHOLDS": "propaganda:0.5"}, "expected LABEL=NUMBER"),
        ("thresholds: {propaganda: 1.5}\n", {}, "invalid value for thresholds"),
        ("security_protocol: SASL_SSL\n", {}, "needs sasl_username"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path: Path, yaml_text: str, env: dict[str, str], needle: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, environ=env)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_secrets_from_env_or_file_are_masked(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    s = load_settings(None, {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u", "allow_plaintext_sasl": True},
                      environ={"FLAGSTREAM_SASL_PASSWORD_FILE": str(pw)})
    assert s.kafka_security()["sasl_plain_password"] == "s3cret"
    s2 = load_settings(None, {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u"},
                       environ={"FLAGSTREAM_SASL_PASSWORD": "envpw"})
    assert s2.masked()["sasl_password"] == "***"
    assert "envpw" not in str(s2.masked())


def test_cli_config_show_masks_and_bad_flag_is_one_line() -> None:
    ok = subprocess.run([sys.executable, "-m", "flagstream.cli", "config", "show", "--security-protocol", "SASL_SSL",
                         "--sasl-username", "alice"], capture_output=True, text=True,
                        env={"FLAGSTREAM_SASL_PASSWORD": "topsecret", "PATH": "/usr/bin:/bin"})
    assert ok.returncode == 0, ok.stderr
    assert "topsecret" not in ok.stdout and "'***'" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "flagstream.cli", "config", "show", "--batch-size", "-3"],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "batch_size" in bad.stderr and "Traceback" not in bad.stderr


def test_flagstream_config_env_names_the_yaml(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("group_id: via-env-config\n")
    s = load_settings(None, environ={"FLAGSTREAM_CONFIG": str(cfg)})
    assert s.group_id == "via-env-config"


def test_kubernetes_service_link_variables_are_ignored_silently(caplog: pytest.LogCaptureFixture) -> None:
    """Exactly what Kubernetes injects into every pod of a namespace with a Service named ``flagstream``."""
    env = {
        "FLAGSTREAM_SERVICE_HOST": "10.96.12.7",
        "FLAGSTREAM_SERVICE_PORT": "9108",
        "FLAGSTREAM_SERVICE_PORT_METRICS": "9108",
        "FLAGSTREAM_PORT": "tcp://10.96.12.7:9108",
        "FLAGSTREAM_PORT_9108_TCP": "tcp://10.96.12.7:9108",
        "FLAGSTREAM_PORT_9108_TCP_PROTO": "tcp",
        "FLAGSTREAM_PORT_9108_TCP_PORT": "9108",
        "FLAGSTREAM_PORT_9108_TCP_ADDR": "10.96.12.7",
    }
    with caplog.at_level("WARNING"):
        s = load_settings(None, environ=env)
    assert s.metrics_port == 0  # none of them is read as a setting
    assert caplog.records == []


def test_unknown_env_variable_warns_with_nearest_name(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        s = load_settings(None, environ={"FLAGSTREAM_BACH_SIZE": "7", "FLAGSTREAM_NOPE": "1"})
    assert s.batch_size == 512  # the typo is not applied, and not fatal
    msgs = [r.getMessage() for r in caplog.records]
    assert any("FLAGSTREAM_BACH_SIZE" in m and "did you mean FLAGSTREAM_BATCH_SIZE?" in m for m in msgs), msgs
    assert any("FLAGSTREAM_NOPE" in m and "no setting has a similar name" in m for m in msgs), msgs


def test_cli_with_service_links_starts_and_typo_is_one_warning_line() -> None:
    env = {"PATH": "/usr/bin:/bin", "FLAGSTREAM_SERVICE_HOST": "10.0.0.1", "FLAGSTREAM_SERVICE_PORT": "80",
           "FLAGSTREAM_PORT": "tcp://10.0.0.1:80", "FLAGSTREAM_PORT_80_TCP": "tcp://10.0.0.1:80",
           "FLAGSTREAM_PORT_80_TCP_PROTO": "tcp", "FLAGSTREAM_PORT_80_TCP_PORT": "80",
           "FLAGSTREAM_PORT_80_TCP_ADDR": "10.0.0.1", "FLAGSTREAM_GROUP_ID": "k8s"}
    import os

    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
    ok = subprocess.run([sys.executable, "-m", "flagstream.cli", "config", "show"], capture_output=True, text=True,
                        env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == "" and "group_id: k8s" in ok.stdout
    typo = subprocess.run([sys.executable, "-m", "flagstream.cli", "config", "show"], capture_output=True,
                          text=True, env={**env, "FLAGSTREAM_GROUPID": "x"})
    assert typo.returncode == 0, typo.stderr
    assert typo.stderr.splitlines() == [
        "ignoring unknown environment variable FLAGSTREAM_GROUPID; did you mean FLAGSTREAM_GROUP_ID?"]


@pytest.mark.parametrize("flag", ["--sasl-password", "--ssl-password"])
def test_config_show_refuses_secrets_on_the_command_line(flag: str) -> None:
    """``config show`` refuses a secret flag exactly as ``stream`` does (no such flag, value redacted;
    tests/test_security_cli.py covers the other commands)."""
    for cmd in (["config", "show"], ["stream"]):
        r = subprocess.run([sys.executable, "-m", "flagstream.cli", *cmd, flag, "hunter2"], capture_output=True,
                           text=True)
        assert r.returncode == 2, (cmd, r.stderr)
        assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr
        assert "hunter2" not in r.stderr and "unrecognized arguments" in r.stderr


def test_the_projects_own_non_setting_variables_are_not_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    """CI sets FLAGSTREAM_REQUIRE_TLS_TESTS for the whole run: a warning there broke every one-line-stderr check."""
    env = {"FLAGSTREAM_REQUIRE_TLS_TESTS": "1", "FLAGSTREAM_CACHE_DIR": "/tmp/x",
           "FLAGSTREAM_SPARK_FAIL_FIRST_ATTEMPT": "0"}
    with caplog.at_level("WARNING"):
        load_settings(None, environ=env)
    assert caplog.records == []
    bad = subprocess.run([sys.executable, "-m", "flagstream.cli", "config", "show", "--batch-size", "-3"],
                         capture_output=True, text=True, env={**os.environ, **env})
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr


def test_sasl_plain_in_clear_is_refused_unless_opted_in() -> None:
    from flagstream.errors import ConfigError

    s = load_settings(None, {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u", "sasl_password": "pw"},
                      environ={})
    with pytest.raises(ConfigError) as err:
        s.kafka_common()
    msg = str(err.value)
    assert "allow_plaintext_sasl" in msg and "in clear" in msg and "\n" not in msg and "pw" not in msg.split()
    ok = load_settings(None, {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u", "sasl_password": "pw"},
                       environ={"FLAGSTREAM_ALLOW_PLAINTEXT_SASL": "true"})
    assert ok.kafka_common()["sasl_plain_password"] == "pw"
    scram = load_settings(None, {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                                 "sasl_username": "u", "sasl_password": "pw"}, environ={})
    assert scram.kafka_common()["sasl_mechanism"] == "SCRAM-SHA-512"  # SCRAM never sends the password
    tls = load_settings(None, {"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": "pw"},
                        environ={})
    assert tls.kafka_common()["sasl_mechanism"] == "PLAIN"
