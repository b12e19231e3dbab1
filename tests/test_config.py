"""Config precedence and one-line errors: YAML < FLAGSTREAM_* env < CLI flags."""

from __future__ import annotations

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
        ("", {"FLAGSTREAM_NOPE": "1"}, "unknown environment variable FLAGSTREAM_NOPE"),
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
    s = load_settings(None, {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u"},
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
