"""The message contract every layer shares: one module per topic, standard library only."""
