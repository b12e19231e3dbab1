"""flagstream: flag extremist propaganda and sectarian hate in social feeds, from Kafka or from archives."""

__version__ = "0.1.0"
