"""``flagstream broker``: the embedded Kafka-compatible broker (Tansu) on loopback, for demos and tests."""

from __future__ import annotations

import argparse
import sys
import threading

from flagstream.streaming.signals import on_stop_signals


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("broker", help="run the embedded Kafka-compatible broker on loopback until Ctrl-C",
                       description="Start Tansu (in-memory storage) on 127.0.0.1, wait until it answers a Kafka "
                                   "metadata request, print its bootstrap address, stop it cleanly on "
                                   "Ctrl-C/SIGTERM. Data lives in memory only.")
    p.add_argument("--port", type=int, default=9092, help="listen port (default 9092; 0 = any free port)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1, loopback)")
    p.add_argument("--log-file", default=None, metavar="PATH", help="append the broker's own log here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from flagstream.errors import UserError
    from flagstream.streaming.kafka.broker import BrokerError, EmbeddedBroker

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be within 0..65535, got {args.port}")
    stop = threading.Event()

    on_stop_signals(lambda _name: stop.set())
    broker = EmbeddedBroker(port=args.port, host=args.host, log_path=Path(args.log_file) if args.log_file else None)
    try:
        broker.start()
    except BrokerError as exc:
        raise UserError(f"{exc} (is port {args.port} already in use? try --port 0)") from None
    print(f"broker ready at {broker.bootstrap}  (export FLAGSTREAM_BOOTSTRAP_SERVERS={broker.bootstrap}; "
          "Ctrl-C stops it)", flush=True)
    try:
        while not stop.wait(0.5):
            if not broker.running:
                print("flagstream broker: error: the broker process exited unexpectedly", file=sys.stderr)
                return 1
    finally:
        broker.stop()
    print("broker stopped", flush=True)
    return 0
