"""Kafka consumers, producers and the embedded broker launcher. Never imports torch."""
