"""Issue 29: the audit sample's key is a secret, never the public default.

With the public default ``audit_seed`` anyone who controls post ids could compute which posts are
audited (and so keep their posts out of the sample). Now the key is ``audit_seed`` /
``audit_seed_file`` (a secret, never in YAML or on the command line), or else a random key per
process with a WARNING that the sample is then not reproducible across replicas.
"""

from __future__ import annotations

import logging

import pytest

from flagstream.config import ConfigError, load_settings
from flagstream.streaming.loop.audit import AuditPolicy, uniform


def test_no_configured_seed_means_a_secret_random_one_and_a_warning(caplog):
    s = load_settings(None, {}, environ={})
    with caplog.at_level(logging.WARNING, logger="flagstream.streaming.loop.audit"):
        policy = AuditPolicy.from_settings(s)
    assert policy.seed != "flagstream-audit" and len(policy.seed) >= 32
    assert AuditPolicy.from_settings(s).seed == policy.seed  # one process draws consistently
    assert any("no audit_seed configured" in r.getMessage() and "replicas" in r.getMessage()
               and "FLAGSTREAM_AUDIT_SEED" in r.getMessage() for r in caplog.records)
    # the public default's draw for a post id no longer predicts the sample
    ids = [f"p{i}" for i in range(200)]
    assert [uniform(i, policy.seed) for i in ids] != [uniform(i, "flagstream-audit") for i in ids]


def test_a_configured_seed_from_env_or_file_is_used_and_masked(tmp_path, caplog):
    s = load_settings(None, {}, environ={"FLAGSTREAM_AUDIT_SEED": "k3y-from-env"})
    with caplog.at_level(logging.WARNING, logger="flagstream.streaming.loop.audit"):
        assert AuditPolicy.from_settings(s).seed == "k3y-from-env"
    assert not caplog.records
    assert "k3y-from-env" not in str(s.masked())
    f = tmp_path / "seed"
    f.write_text("file-secret\n", encoding="utf-8")
    assert AuditPolicy.from_settings(load_settings(None, {"audit_seed_file": str(f)}, environ={})).seed == "file-secret"
    f.write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is empty"):
        AuditPolicy.from_settings(load_settings(None, {"audit_seed_file": str(f)}, environ={}))
    yaml_cfg = tmp_path / "c.yaml"
    yaml_cfg.write_text("audit_seed: in-yaml\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="secrets don't belong in YAML"):
        load_settings(yaml_cfg, {}, environ={})
