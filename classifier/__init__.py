"""The classifier: data, training, evaluation and inference. Knows nothing of Kafka."""
