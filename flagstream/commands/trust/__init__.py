"""Trust-and-safety commands after a verdict (issue 33): ``bank`` (known-content banks), ``statements`` (DSA)."""
