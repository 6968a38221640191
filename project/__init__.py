"""Your code: pure functions for input, model, loss and optimizer, and the declarations of
your hyperparameters. What each function must do: library/contract.py; where each change
goes: README.md, "Where does my change go"."""
