"""Your code: pure input, model, loss and optimizer functions (see library/estimator.py)."""
