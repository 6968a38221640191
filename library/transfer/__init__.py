"""Transfer learning: variable names and inspection (``names``), warm start and per-variable
learning-rate multipliers (``warm_start``), TF Hub modules as Keras 3 layers (``hub``)."""
