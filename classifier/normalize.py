"""Tweet normalisation, shared verbatim by training and inference.

A model that sees ``@SomeAccount`` and ``https://t.co/xyz`` in training learns accounts and link
shorteners, not content; and a scorer that normalises differently from its trainer silently loses
accuracy. So there is exactly one function, versioned: a model records ``NORMALIZER_VERSION`` in its
manifest and refuses to load under a different one.
"""

from __future__ import annotations

import html
import re
import unicodedata

NORMALIZER_VERSION = "1"

_URL = re.compile(r"(?:https?://|www\.)\S+|\burl\b|\bURL\b|@url\b", re.IGNORECASE)
_HANDLE = re.compile(r"(?<![\w@])@\w{1,30}|\[@(?:PRE|POL|GRP|IND)\]|@USER\b", re.IGNORECASE)
_RT_PREFIX = re.compile(r"^(?:\s*RT\s+(?:@\w+)?\s*:?\s*)+", re.IGNORECASE)
_LINEBREAK_TOKEN = re.compile(r"<LF>")
_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
# Bidi overrides/isolates and zero-width characters: used to evade filters, carry no meaning.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Canonical form of a post for the model: entities decoded, URLs and handles masked."""
    text = _JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    text = html.unescape(text)
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    text = _LINEBREAK_TOKEN.sub(" ", text)
    text = _RT_PREFIX.sub("", text)
    text = _URL.sub(" http ", text)
    text = _HANDLE.sub(" @user ", text)
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return _SPACE.sub(" ", text).strip()


def dedup_key(text: str) -> str:
    """Key under which near-identical posts (retweets, case/punctuation variants) collide."""
    t = normalize_text(text).lower()
    t = t.replace("http", " ").replace("@user", " ")
    t = re.sub(r"[^\w]+", " ", t)
    return _SPACE.sub(" ", t).strip()
