"""Scoring posts with a trained model: the scorer interface's implementations and their runtimes."""
