"""The one test-support package for tests that run flagstream against the embedded broker.

Import style everywhere: ``from support.<module> import ...`` (``pythonpath = ["tests"]`` in pyproject.toml;
the repository root is not on ``sys.path``: the project is imported by its installed names only).

- :mod:`support.kafka`: unique names, topic creation, producing, reading topics back, metrics text.
- :mod:`support.model`: the one synthetic corpus, the one linear test model trainer, sample texts.
- :mod:`support.topics`: :class:`~support.topics.TopicSet`, a test's topics + settings/env.
- :mod:`support.producer`: the one paced producer (a background thread at a steady rate).
- :mod:`support.process`: the one ``flagstream stream`` subprocess wrapper, the in-process
  :class:`~support.process.PipelineThread`, and ``run_cli``.
- :mod:`support.audit`: accounting of every id sent (scores, review, dead-letter), with the
  duplicate bounds the README states.
- :mod:`support.tcp_proxy`, :mod:`support.tls`: network faults and TLS fronting.

Every wait is bounded: a helper that times out raises ``AssertionError`` saying what it waited for.
"""
