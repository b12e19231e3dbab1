"""Turning :class:`~flagstream.config.Settings` fields into CLI flags, so names never drift.

``--batch-size`` is ``batch_size`` in YAML and ``FLAGSTREAM_BATCH_SIZE`` in the environment because all
three are derived from the same field name here.
"""

from __future__ import annotations

import argparse
from typing import Any

from flagstream.config import SECRET_FIELDS, Settings, load_settings, parse_thresholds
from flagstream.errors import UserError

# The Kafka connection-security settings every command that talks to a broker takes, in one place, so a new
# one (or a fix to one) reaches stream, produce, review, decide, console, dlq, export-decisions, calibrate and
# shadow-report alike. Passwords are not flags (add_config_flags skips secrets): environment or *_file only.
KAFKA_SECURITY_FIELDS = ("security_protocol", "sasl_mechanism", "sasl_username", "sasl_password_file",
                         "ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")


def add_config_flags(parser: argparse.ArgumentParser, *fields: str) -> None:
    """Add ``--config`` plus one flag per named Settings field (all default to None = not given).

    Secret fields (``sasl_password``, ``ssl_password``) never become flags: a value on the command line
    ends up in shell history and ``ps``; they come from the environment or a ``*_file`` path.
    """
    parser.add_argument("--config", metavar="YAML", help="config file (default: configs/default.yaml or $FLAGSTREAM_CONFIG)")
    for name in fields:
        if name in SECRET_FIELDS:
            continue
        info = Settings.model_fields[name]
        flag = "--" + name.replace("_", "-")
        ann = info.annotation
        if ann is bool or ann == (bool | None):
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None,
                                help=f"(config: {name}, default {info.default})")
        else:
            parser.add_argument(flag, dest=name, default=None, metavar=name.split("_")[-1].upper(),
                                help=f"(config: {name}, default {info.default})")


def settings_from_args(args: argparse.Namespace, **fixed: Any) -> Settings:
    overrides = {k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None}
    if isinstance(overrides.get("thresholds"), str):
        overrides["thresholds"] = parse_thresholds(overrides["thresholds"], source="--thresholds")
    overrides.update(fixed)
    return load_settings(getattr(args, "config", None), overrides)


TRAIN_EXTRA = ("datasets", "matplotlib", "openpyxl", "peft")


def require_train_extra(command: str) -> None:
    """train/evaluate/calibrate need the ``[train]`` extra; say so in one line instead of an ImportError."""
    import importlib.util

    missing = []
    for name in TRAIN_EXTRA:
        try:
            found = importlib.util.find_spec(name) is not None
        except ValueError:  # already in sys.modules as None: deliberately unavailable
            found = False
        if not found:
            missing.append(name)
    if missing:
        raise UserError(f"'flagstream {command}' needs {', '.join(missing)}: pip install 'flagstream[train]'")
