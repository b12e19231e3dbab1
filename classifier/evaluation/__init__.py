"""Measuring a model: held-out metrics, leave-one-source-out, the functional suite, reports and cards."""
