"""Searches over hyperparameters: one key's values in turn (``sweep``)."""
