"""The one test-support package for tests that run flagstream against the embedded broker.

Import style everywhere: ``from tests.support.<module> import ...`` (the repository root is on
``sys.path`` through ``pythonpath = ["."]`` in pyproject.toml).

- :mod:`tests.support.kafka`: unique names, topic creation, producing, reading topics back, metrics text.
- :mod:`tests.support.model`: the one synthetic corpus, the one linear test model trainer, sample texts.
- :mod:`tests.support.topics`: :class:`~tests.support.topics.TopicSet`, a test's topics + settings/env.
- :mod:`tests.support.producer`: the one paced producer (a background thread at a steady rate).
- :mod:`tests.support.process`: the one ``flagstream stream`` subprocess wrapper, the in-process
  :class:`~tests.support.process.PipelineThread`, and ``run_cli``.
- :mod:`tests.support.audit`: accounting of every id sent (scores, review, dead-letter), with the
  duplicate bounds the README states.
- :mod:`tests.support.tcp_proxy`, :mod:`tests.support.tls`: network faults and TLS fronting.

Every wait is bounded: a helper that times out raises ``AssertionError`` saying what it waited for.
"""
