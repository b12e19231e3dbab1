"""Reviewers' decisions back into the model: per-feed thresholds and recalibration proposals."""
