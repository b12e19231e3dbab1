"""A functional test suite for the two labels, in the spirit of HateCheck (Röttger et al., 2021).

Held-out metrics say how often a model is right on the data's mix of posts; they do not say *which*
kinds of post it gets wrong. The suite asks that question for the hard part of this job: reporting,
eyewitness accounts, analysis, religious talk, counter-speech and condemnations that quote propaganda
must not be flagged; praise of attacks, recruitment, calls to fight, threats and dehumanising a sect
must be. Every case is templated (``templates.yaml``: templates x filler sets, in English, Arabic,
French and German), labelled with its functionality and the labels it expects, and written for this
project. ``cases.jsonl`` is generated from it (:mod:`flagstream.classifier.evaluation.functional.build`); the suite is run by
:mod:`flagstream.classifier.evaluation.functional.suite` (``flagstream evaluate --functional``).
"""
