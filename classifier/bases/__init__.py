"""Encoder bases the classifier fine-tunes (MiniLM, multilingual e5) and the registry that names them."""
