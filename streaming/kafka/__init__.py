"""Kafka connections: client factories and their lifecycle, transport security, topics, the embedded broker."""
