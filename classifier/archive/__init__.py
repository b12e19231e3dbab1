"""Rescoring archives (JSONL/Parquet in, Parquet out) on one machine or on Spark; shared by the CLI and Spark."""
