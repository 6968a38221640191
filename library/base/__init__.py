"""The bottom layer, which every other imports and which imports none of them: a run's own
files on any file system (``files``), TensorFlow imported quietly (``quiet``), the errors a
user meets (``errors``). Nothing here imports TensorFlow at import time."""
