"""The one typed configuration object (leaf layer: importable by every layer, imports no project code).

Precedence, lowest to highest: field defaults < YAML file < ``FLAGSTREAM_*`` environment
variables < CLI flags. A key has the same name everywhere: ``batch_size`` in YAML is
``FLAGSTREAM_BATCH_SIZE`` in the environment and ``--batch-size`` on the command line, so an
operator never has to learn three vocabularies.

Secrets (SASL password, TLS key password) are never meant to live in a committed YAML: they come
from the environment or from a ``*_file`` path, and :meth:`Settings.masked` hides them.

Size: every setting of every component is declared here once, with its type, bound and one-line reason
(the components read their own narrow view of it); splitting the declarations would split that one list.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import secrets
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from flagstream.errors import ConfigError  # re-exported: the leaf's error types live in flagstream.errors

ENV_PREFIX = "FLAGSTREAM_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "configs" / "default.yaml"
DEFAULT_MODEL_DIR = PROJECT_ROOT / "models" / "flagstream-me5"  # multilingual; models/flagstream-minilm: English only
log = logging.getLogger("flagstream.config")


# The EU member states (ISO 3166-1 alpha-2, as the DSA Transparency Database spells them): the default territorial
# scope of a statement of reasons.
EU_COUNTRIES = ("AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT", "LT",
                "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK")


class Settings(BaseModel):
    """Everything flagstream can be told, with the defaults a local run needs."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # --- broker and topics -------------------------------------------------------------
    bootstrap_servers: str = "localhost:9092"
    client_id: str = "flagstream"
    group_id: str = "flagstream"
    posts_topic: str = "posts"
    review_topic: str = "posts.review"
    scores_topic: str = "posts.scores"
    scores_enabled: bool = True
    dlq_topic: str = "posts.dlq"
    decisions_topic: str = "posts.decisions"  # reviewer verdicts (flagstream decide, the review console)
    # None = auto: create missing topics only on a single-broker cluster (the embedded broker, a dev box),
    # where replication_factor 1 is all there is; on a real cluster report them instead (see flagstream.streaming.kafka.topics).
    create_topics: bool | None = None
    topic_partitions: int = Field(3, ge=1)
    replication_factor: int = Field(1, ge=1)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    exactly_once: bool = False
    instance_id: str | None = None  # stable per member (e.g. pod name): exactly_once's transactional id

    # --- consumer group timing ---------------------------------------------------------
    session_timeout_ms: int = Field(10_000, ge=1000)
    heartbeat_interval_ms: int = Field(3_000, ge=100)
    max_poll_interval_ms: int = Field(300_000, ge=1000)
    request_timeout_ms: int = Field(30_000, ge=1000)
    reconnect_backoff_max_ms: int = Field(10_000, ge=50)
    startup_timeout_s: float = Field(60.0, gt=0)

    # --- micro-batching and scoring ----------------------------------------------------
    batch_size: int = Field(512, ge=1)  # a cap, reached only under backlog; batch_wait_ms bounds latency
    batch_wait_ms: int = Field(200, ge=0)
    max_text_chars: int = Field(10_000, ge=1)
    max_message_bytes: int = Field(1_000_000, ge=1024)
    model: Path = DEFAULT_MODEL_DIR
    # Origin, not just integrity: the SHA-256 of the model directory's manifest.json an operator
    # approved (``sha256sum MODEL/manifest.json``). The manifest fingerprints every model file and
    # every file of the base model, so a pin refuses any other model, however self-consistent.
    model_manifest_sha256: str | None = None
    thresholds: dict[str, float] | None = None
    scoring_threads: int = Field(0, ge=0)  # 0 = torch default (all cores)
    # Transformer arithmetic. auto = bf16 where the CPU has it natively (AMX, AVX-512-BF16), else fp32;
    # int8 = ONNX Runtime per-channel int8 (the `onnx` extra), the fastest measured on AVX2-only CPUs
    # with >= 99.5% flag agreement against fp32 (bench/RESULTS.md). Opt-in: check your model's agreement.
    precision: Literal["auto", "fp32", "bf16", "int8"] = "auto"
    # Shadow mode (issue 18): a candidate model scores every post too, after the served one, and its
    # verdicts go to shadow_topic only (never to reviewers). None = off. Manifest-checked like ``model``.
    shadow_model: Path | None = None
    shadow_model_manifest_sha256: str | None = None
    shadow_topic: str = "posts.shadow"

    # --- operations --------------------------------------------------------------------
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(0, ge=0, le=65535)  # 0 = no metrics server
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "text"] = "auto"
    progress_interval_s: float = Field(30.0, ge=0)  # INFO progress line (posts/s, lag, flagged); 0 = off

    # --- review console (flagstream console) -------------------------------------------
    console_host: str = "127.0.0.1"
    console_port: int = Field(8765, ge=0, le=65535)
    console_token: SecretStr | None = None  # required when console_host is not a loopback address
    # Per-reviewer credentials: a JSON file {"token": "reviewer id", ...}. When set, each request's token names
    # its reviewer and the console stamps that id on the decision (a reviewer id in the request is ignored).
    console_tokens_file: Path | None = None
    # The header an authenticating proxy puts the reviewer's identity in (e.g. X-Forwarded-User). Trusted ONLY
    # when set, and only behind a proxy that strips it from clients; None = never read.
    console_trusted_header: str | None = None
    console_max_body_bytes: int = Field(65_536, ge=1024)  # larger request bodies get 413
    console_max_items: int = Field(200_000, ge=100)  # undecided review records held; the oldest are evicted
    console_max_decided: int = Field(1_000_000, ge=1000)  # decided post ids remembered; the oldest are forgotten
    # HMAC-SHA256 key that signs decisions (console, flagstream decide) and that calibrate/export-decisions
    # verify with. A secret: FLAGSTREAM_DECISIONS_HMAC_KEY or decisions_hmac_key_file, never YAML or a flag.
    decisions_hmac_key: SecretStr | None = None
    decisions_hmac_key_file: Path | None = None
    # --- review record extras (computed for flagged posts only) -------------------------
    explain_spans: bool = True  # per flagged label, the character spans that drove the score
    # Spans spend the loop's idle time plus this share of its working time (streaming/loop/annotate.py: ExplainBudget);
    # past it a flagged post goes to review with spans_skipped "load". A large value (100) explains every post.
    explain_share: float = Field(0.10, ge=0)
    # Explanations run before their batch's review records go out, so this bounds what spans add to a flagged
    # post's review latency: at most this many seconds of explanation per batch (and never over a quarter of
    # max_poll_interval_ms). Raise it for more spans at a quiet feed, at the cost of that latency.
    explain_max_batch_s: float = Field(1.0, ge=0)
    campaigns_enabled: bool = True
    # --- campaigns (near-duplicate flagged posts share an id in the review record) -----
    campaign_window_s: float = Field(86_400.0, gt=0)
    campaign_max_posts: int = Field(20_000, ge=100)  # memory bound: oldest flagged posts are forgotten first
    campaign_similarity: float = Field(0.4, gt=0, le=1)  # estimated Jaccard over shingles to join a campaign
    # --- audit sample (unflagged posts sent to review with a known weight; streaming/loop/audit.py) --
    audit_rate: float = Field(0.01, ge=0, le=1)  # inclusion probability of a post far below every threshold
    audit_near_rate: float = Field(0.10, ge=0, le=1)  # ... of a post just below a threshold (both 0 = no audit)
    audit_near_band: float = Field(0.5, ge=0, le=1)  # "just below": score >= band x threshold for some label
    # Secret key of the audit draw (else post ids would predict the sample); the same on every replica. Unset:
    # a random key per process, with a WARNING (resolved_audit_seed, streaming/loop/audit.py).
    audit_seed: SecretStr | None = None
    audit_seed_file: Path | None = None
    # --- known-content banks (issue 33; docs/banks.md) ----------------------------------
    bank_enabled: bool = False  # the stream reads bank_topic and applies both banks to every post
    bank_topic: str = "posts.bank"  # compacted: key = entry id, tombstone = removed entry; signatures only, never text
    bank_max_entries: int = Field(100_000, ge=1)  # per bank; the oldest entries leave first
    bank_ttl_days: float = Field(365.0, gt=0)  # a new entry expires this long after its decision
    bank_similarity: float = Field(0.7, gt=0, le=1)  # estimated Jaccard (MinHash) for a near-duplicate match
    # A post matching the negative bank (a rejected repost) is not sent to review again unless one of its flagged
    # labels scores at least this: a stricter bar than the label's threshold.
    bank_negative_override: float = Field(0.98, ge=0, le=1)
    # --- statements of reasons and time to decision (issue 33; docs/statements.md) -----------
    # label -> overrides of its DSA ground and category (decision_ground, category, category_specification,
    # incompatible_content_ground / illegal_content_legal_ground, the explanation, decision_ground_reference_url,
    # action); unset keys keep the defaults in flagstream.streaming.ops.statements.DEFAULT_POLICIES.
    statement_policies: dict[str, dict[str, Any]] = Field(default_factory=dict)
    statement_territorial_scope: list[str] = Field(default_factory=lambda: list(EU_COUNTRIES))
    decision_sla_s: float = Field(3600.0, gt=0)  # flagged-to-decided time a team commits to (TCO: one hour)

    # --- data (training / evaluation only) ---------------------------------------------
    data_dir: Path = PROJECT_ROOT.parent / "shared" / "data"

    # --- Kafka security, passed through to kafka-python --------------------------------
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_password: SecretStr | None = None
    ssl_check_hostname: bool = True
    # SASL PLAIN over SASL_PLAINTEXT sends the password in clear: refused unless set (SCRAM needs no opt-in)
    allow_plaintext_sasl: bool = False

    @field_validator("thresholds")
    @classmethod
    def _thresholds_in_range(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is not None:
            for label, t in v.items():
                if not 0.0 <= float(t) <= 1.0:
                    raise ValueError(f"threshold for {label!r} must be within [0, 1], got {t}")
        return v

    @field_validator("model_manifest_sha256", "shadow_model_manifest_sha256")
    @classmethod
    def _sha256_hex(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        v = v.strip().lower()
        if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
            raise ValueError("expected the 64 hex digits printed by 'sha256sum MODEL/manifest.json'")
        return v

    @field_validator("sasl_mechanism", mode="before")
    @classmethod
    def _mechanism_upper_and_supported(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.strip().upper()
            if v == "OAUTHBEARER":
                raise ValueError("OAUTHBEARER is not supported yet (no token provider is wired in); use "
                                 "SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN, over SASL_SSL")
            if v in ("GSSAPI", "AWS_MSK_IAM"):
                raise ValueError(f"{v} is not supported; use SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN, over SASL_SSL")
        return v

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers_look_like_host_port(cls, v: str) -> str:
        for part in v.split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected HOST:PORT[,HOST:PORT...], got {v!r}")
        return v

    # ------------------------------------------------------------------------------------
    def kafka_security(self) -> dict[str, Any]:
        """kafka-python keyword arguments for transport security and authentication.

        Every Kafka client of flagstream gets its arguments here, so this is where a password that would
        cross the network in clear is refused.

        Raises:
            ConfigError: SASL PLAIN over SASL_PLAINTEXT without ``allow_plaintext_sasl``; or the
                ``sasl_password_file`` cannot be read.
        """
        out: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            out["ssl_check_hostname"] = self.ssl_check_hostname
            for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                value = getattr(self, key)
                if value is not None:
                    out[key] = str(value)
            if self.ssl_password is not None:
                out["ssl_password"] = self.ssl_password.get_secret_value()
        if self.security_protocol.startswith("SASL"):
            if (self.security_protocol == "SASL_PLAINTEXT" and (self.sasl_mechanism or "PLAIN") == "PLAIN"
                    and not self.allow_plaintext_sasl):
                raise ConfigError(
                    "security_protocol SASL_PLAINTEXT with sasl_mechanism PLAIN sends the password in clear; use "
                    "SASL_SSL or SCRAM-SHA-512, or set allow_plaintext_sasl: true "
                    "(FLAGSTREAM_ALLOW_PLAINTEXT_SASL=true) on a network you trust")
            out["sasl_mechanism"] = self.sasl_mechanism or "PLAIN"
            out["sasl_plain_username"] = self.sasl_username
            out["sasl_plain_password"] = self.resolved_sasl_password()
        return out

    def kafka_common(self) -> dict[str, Any]:
        """Arguments every kafka-python client of flagstream shares."""
        return {
            "bootstrap_servers": [s.strip() for s in self.bootstrap_servers.split(",")],
            "client_id": self.client_id,
            "request_timeout_ms": self.request_timeout_ms,
            "reconnect_backoff_max_ms": self.reconnect_backoff_max_ms,
            **self.kafka_security(),
        }

    def resolved_sasl_password(self) -> str | None:
        if self.sasl_password is not None:
            return self.sasl_password.get_secret_value()
        if self.sasl_password_file is not None:
            try:
                return self.sasl_password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"sasl_password_file {self.sasl_password_file} cannot be read ({exc.strerror}); "
                    "point FLAGSTREAM_SASL_PASSWORD_FILE at a readable file"
                ) from None
        return None

    def resolved_decisions_hmac_key(self) -> bytes | None:
        """The decisions signing key (env var first, then the file), or None when neither is set.

        Raises:
            ConfigError: the key file cannot be read, or the key is shorter than 16 bytes.
        """
        key: str | None = None
        if self.decisions_hmac_key is not None:
            key = self.decisions_hmac_key.get_secret_value()
        elif self.decisions_hmac_key_file is not None:
            try:
                key = self.decisions_hmac_key_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"decisions_hmac_key_file {self.decisions_hmac_key_file} cannot be read ({exc.strerror}); "
                    "point FLAGSTREAM_DECISIONS_HMAC_KEY_FILE at a readable file"
                ) from None
        if key is None:
            return None
        if len(key.encode()) < 16:
            raise ConfigError("the decisions HMAC key is shorter than 16 bytes; use a long random key")
        return key.encode()
    def resolved_audit_seed(self) -> tuple[str, bool]:
        """The audit draw's key and whether it was configured (False: this process's random one).

        Raises:
            ConfigError: ``audit_seed_file`` cannot be read or is empty.
        """
        if self.audit_seed is not None and self.audit_seed.get_secret_value():
            return self.audit_seed.get_secret_value(), True
        if self.audit_seed_file is not None:
            try:
                seed = self.audit_seed_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"audit_seed_file {self.audit_seed_file} cannot be read ({exc.strerror}); point "
                                  "FLAGSTREAM_AUDIT_SEED_FILE at a readable file") from None
            if not seed:
                raise ConfigError(f"audit_seed_file {self.audit_seed_file} is empty; put a long random secret in it "
                                  "(e.g. openssl rand -hex 32)")
            return seed, True
        return _PROCESS_AUDIT_SEED, False

    def masked(self) -> dict[str, Any]:
        """The effective config as plain data, secrets replaced by ``***``."""
        data = self.model_dump(mode="json")
        for key in SECRET_FIELDS:
            if data.get(key) is not None:
                data[key] = "***"
        return data


SECRET_FIELDS = frozenset({"sasl_password", "ssl_password", "console_token", "decisions_hmac_key", "audit_seed"})
# The audit draw's key when none is configured: random, one per process (so one process draws consistently).
_PROCESS_AUDIT_SEED = secrets.token_hex(32)


# Kubernetes injects service-link variables into every pod of a namespace that has a Service named
# ``flagstream``: FLAGSTREAM_SERVICE_HOST, FLAGSTREAM_SERVICE_PORT[_<NAME>], FLAGSTREAM_PORT and
# FLAGSTREAM_PORT_<N>_<PROTO>[_PROTO|_PORT|_ADDR]. They are not flagstream settings and must never
# stop a pod from starting, so they are skipped silently.
_SERVICE_LINK = re.compile(r"^FLAGSTREAM_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_[A-Z]+)?)?)$")


# The project's own variables that are not settings: read where they act, never warned about.
NON_SETTING_VARIABLES: dict[str, str] = {
    "config": "names the YAML file itself (load_settings reads it)",
    "cache_dir": "where the multilingual base is generated on first use (classifier/bases/e5/base.py)",
    "require_tls_tests": "CI: TLS/browser/Spark test dependencies must install (scripts/install-test-deps.sh)",
    "spark_fail_first_attempt": "tests: fail each Spark task's first attempt (classifier/archive/spark.py)",
    "fuzz_profile": "tests: the hypothesis profile of the fuzz suite, ci or long (tests/support/fuzz.py)",
}


def is_service_link(name: str) -> bool:
    """True for the variables Kubernetes injects for a Service named ``flagstream``."""
    return bool(_SERVICE_LINK.match(name))


def nearest_setting(key: str) -> str | None:
    """The valid setting name closest to a misspelt one (``bach_size`` -> ``batch_size``), if any is close."""
    match = difflib.get_close_matches(key.lower(), list(Settings.model_fields), n=1, cutoff=0.75)
    return match[0] if match else None


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """``FLAGSTREAM_<FIELD>`` variables as raw (string) overrides.

    Unknown names are *warned about* (with the nearest valid name), never fatal: an orchestrator may
    set variables of its own with this prefix (Kubernetes service links are skipped without a word),
    and a pod that exits 2 at start because of its namespace is worse than a typo left in place.
    """
    environ = dict(os.environ if environ is None else environ)
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX):].lower()
        if key in NON_SETTING_VARIABLES:
            continue
        if key not in Settings.model_fields:
            if not is_service_link(name):
                near = nearest_setting(key)
                hint = f"did you mean {ENV_PREFIX}{near.upper()}?" if near else "no setting has a similar name"
                log.warning(f"ignoring unknown environment variable {name}; {hint}",
                            extra={"variable": name, "suggestion": f"{ENV_PREFIX}{near.upper()}" if near else None})
            continue
        if key == "thresholds":
            out[key] = parse_thresholds(value, source=name)
        else:
            out[key] = value
    return out


def parse_thresholds(value: str, source: str) -> dict[str, float]:
    """``propaganda=0.8,sectarian=0.7`` -> dict, for env vars and CLI flags."""
    out: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in value.split(","))):
        label, sep, num = item.partition("=")
        try:
            out[label.strip()] = float(num)
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigError(f"{source}: expected LABEL=NUMBER[,LABEL=NUMBER], got {value!r}")
    return out


def load_settings(
    config_path: str | Path | None = None,
    cli_overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Merge YAML, environment and CLI into one validated :class:`Settings`.

    Raises :class:`ConfigError` with a single actionable line on any problem.
    """
    path = Path(config_path) if config_path else None
    if path is None:
        env_path = (os.environ if environ is None else environ).get(ENV_PREFIX + "CONFIG")
        path = Path(env_path) if env_path else (DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None)
    data: dict[str, Any] = {}
    if path is not None:
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist; pass --config PATH to an existing YAML file")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"config file {path} is not valid YAML{where}; fix the syntax") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of key: value pairs")
        for secret in SECRET_FIELDS:
            if loaded.get(secret):
                raise ConfigError(
                    f"{path} sets {secret}; secrets don't belong in YAML: use "
                    f"{ENV_PREFIX}{secret.upper()} or {secret}_file instead"
                )
        data.update(loaded)
    data.update(env_overrides(environ))
    data.update({k: v for k, v in (cli_overrides or {}).items() if v is not None})
    data.pop("config", None)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "config"
        if err["type"] == "extra_forbidden":
            raise ConfigError(
                f"unknown config key {key!r}; see configs/default.yaml for the valid keys"
            ) from None
        raise ConfigError(
            f"invalid value for {key} ({err['msg']}); set it in YAML as {key}: ..., "
            f"or as {ENV_PREFIX}{key.upper()}"
        ) from None
    for key in ("model", "data_dir", "shadow_model"):
        value = getattr(settings, key)
        if value is not None and not value.is_absolute() and not value.exists() and (PROJECT_ROOT / value).exists():
            # Relative paths in the shipped YAML mean "in this checkout", wherever the CWD is.
            setattr(settings, key, PROJECT_ROOT / value)
    if settings.security_protocol.startswith("SASL") and not settings.sasl_username:
        raise ConfigError(
            f"security_protocol {settings.security_protocol} needs sasl_username; set FLAGSTREAM_SASL_USERNAME"
        )
    return settings


__all__ = ["ConfigError", "Settings", "load_settings", "env_overrides", "parse_thresholds", "DEFAULT_MODEL_DIR", "PROJECT_ROOT"]
