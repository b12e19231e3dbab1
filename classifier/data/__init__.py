"""The labelled corpus: sources, normalisation into one table, and the train/validation/test splits."""
