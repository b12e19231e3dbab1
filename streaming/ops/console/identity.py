"""Who is deciding: the reviewer identity the console knows, never the one a request claims.

Three ways, in this order of strength (the console uses exactly one; ``flagstream console`` picks it from
the settings):

* per-reviewer tokens (``console_tokens_file``: JSON ``{"token": "reviewer id"}``): the request's token
  names the reviewer;
* a trusted header from an authenticating proxy (``console_trusted_header``, e.g. ``X-Forwarded-User``),
  read ONLY when configured; the proxy must strip the header from client requests, and the shared token
  (if any) is still required;
* the single shared token of the demo (``FLAGSTREAM_CONSOLE_TOKEN``, or none on loopback): then every
  decision carries the reviewer id given at start (``--reviewer``).

A reviewer id in the request (``?reviewer=``, the body) is ignored in all three.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from pathlib import Path

from flagstream.errors import UserError

MAX_PRINCIPAL_CHARS = 256
MIN_TOKEN_CHARS = 16


def load_tokens(path: Path) -> dict[str, str]:
    """token -> reviewer id from a JSON object file.

    Raises:
        UserError: unreadable file, not a JSON object of strings, a token under 16 characters, an empty or
            over-long reviewer id (one line each, saying what to fix).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"console_tokens_file {path} cannot be read ({exc.strerror}); point it at a readable file") from None
    except ValueError:
        raise UserError(f"console_tokens_file {path} is not JSON; write {{\"<token>\": \"<reviewer id>\", ...}}") from None
    if not isinstance(data, dict) or not data:
        raise UserError(f"console_tokens_file {path} must be a non-empty JSON object token -> reviewer id")
    for token, who in data.items():
        if not isinstance(who, str) or not who.strip() or len(who) > MAX_PRINCIPAL_CHARS:
            raise UserError(f"console_tokens_file {path}: every reviewer id must be a non-empty string of at most "
                            f"{MAX_PRINCIPAL_CHARS} characters")
        if len(token) < MIN_TOKEN_CHARS:
            raise UserError(f"console_tokens_file {path}: a token is shorter than {MIN_TOKEN_CHARS} characters "
                            f"(reviewer {who[:40]!r}); use long random tokens")
    return dict(data)


class Identity:
    """Resolves a request's headers to the principal that decides (None: not authorised)."""

    def __init__(self, reviewer: str, token: str | None = None, tokens: Mapping[str, str] | None = None,
                 trusted_header: str | None = None) -> None:
        """Raises:
            ValueError: both per-reviewer tokens and a trusted header (the console uses exactly one source).
        """
        if tokens and trusted_header:
            raise ValueError("console_tokens_file and console_trusted_header are both set; use one")
        self.reviewer = reviewer
        self.token = token
        self.tokens = {k.encode(): v for k, v in (tokens or {}).items()}
        self.trusted_header = trusted_header.lower() if trusted_header else None

    @property
    def token_required(self) -> bool:
        return bool(self.tokens) or self.token is not None

    @property
    def mode(self) -> str:
        return "tokens" if self.tokens else ("header" if self.trusted_header else "shared")

    def principal(self, headers: Mapping[str, str]) -> str | None:
        """The reviewer id of the request, or None when it is not authorised."""
        given = headers.get("x-flagstream-token", "").encode()
        if self.tokens:
            found = None
            for token, who in self.tokens.items():  # every comparison runs: no timing hint of a near miss
                if hmac.compare_digest(given, token):
                    found = who
            return found
        if self.token is not None and not hmac.compare_digest(given, self.token.encode()):
            return None
        if self.trusted_header:
            who = headers.get(self.trusted_header, "").strip()
            return who if who and len(who) <= MAX_PRINCIPAL_CHARS else None
        return self.reviewer


__all__ = ["Identity", "load_tokens", "MIN_TOKEN_CHARS"]
