"""The one family of flagstream's own errors, and which of them end a command with one readable line.

Part of the leaf layer (with :mod:`flagstream.config`): every layer may import it, it imports nothing
of the project. Every error flagstream raises on purpose is a :class:`FlagstreamError`; those a user
can fix are a :class:`UserError`, and the CLI boundary (:func:`flagstream.cli.main`) is the one place
that turns a :class:`UserError` into one line on stderr and exit code 2. A lower layer says what went
wrong by raising a typed subclass; no command translates one kind into another by hand.

The family (each defined beside the code that raises it):

- :class:`UserError`: :class:`ConfigError` (config, env, flags), ``ModelDirError`` (a model directory,
  :mod:`flagstream.classifier.manifest`), ``RescoreError`` (archive files and options,
  :mod:`flagstream.classifier.archive.files`), ``BaseUnavailable`` (an encoder base that cannot load,
  :mod:`flagstream.classifier.bases.e5.base`), ``Int8Unavailable`` (:mod:`flagstream.classifier.inference.onnx_int8`),
  ``BrokerUnavailable`` (:mod:`flagstream.streaming.kafka.clients`), ``BrokerError`` (the embedded broker,
  :mod:`flagstream.streaming.kafka.broker`), ``TransportSecurityError`` (TLS/SASL,
  :mod:`flagstream.streaming.kafka.security`), ``MissingTopics`` (:mod:`flagstream.streaming.kafka.topics`).
- internal, handled where they occur: ``CheckpointError`` and its kinds
  (:mod:`flagstream.streaming.loop.checkpoint`), ``E5FormatError`` (:mod:`flagstream.classifier.bases.e5.fileformat`).
"""


class FlagstreamError(Exception):
    """Base of every error flagstream raises on purpose (``except FlagstreamError`` catches ours, not a bug's)."""


class UserError(FlagstreamError, RuntimeError):
    """Something the user can fix: say what is wrong and how, in one line."""


class ConfigError(UserError, ValueError):
    """A configuration problem (YAML, environment, flag), phrased as one line a user can act on."""
