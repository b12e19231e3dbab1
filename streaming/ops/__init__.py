"""Operator tools around the stream: the review console, review/DLQ readers, decisions, feedback export, shadow report."""
