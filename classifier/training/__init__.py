"""Fitting a model: the training loop, temperature calibration and the `flagstream train` recipe."""
