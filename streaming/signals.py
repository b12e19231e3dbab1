"""The one way a command stops on SIGTERM / SIGINT: a callback that names the signal, and a way back.

Every long-running command (``stream``, ``broker``, ``console``, ``calibrate --watch``, ``review --follow``)
stops cleanly on either signal; what "cleanly" means is the command's own (finish the batch, close the
clients, end the watch loop), so this module only wires the two signals to that callback and hands back the
handlers it replaced, for a caller that must restore them (the console, which runs inside ``demo`` too).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def on_stop_signals(callback: Callable[[str], None]) -> Callable[[], None]:
    """Call ``callback(signal name)`` on SIGTERM and SIGINT; returns a function that restores the previous handlers.

    Must be called from the main thread (Python's rule for :func:`signal.signal`); raises :class:`ValueError`
    otherwise.
    """

    def handler(signum: int, _frame: Any) -> None:
        callback(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


__all__ = ["STOP_SIGNALS", "on_stop_signals"]
