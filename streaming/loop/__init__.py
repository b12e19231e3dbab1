"""The stream loop: poll, parse, score, annotate, route, commit, and what it measures on the way."""
