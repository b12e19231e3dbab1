"""Known-content banks (issue 33): signatures of posts reviewers confirmed (positive) or rejected (negative)."""
