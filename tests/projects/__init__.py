"""Small projects of the library's own tests: each is what a user's ``project/`` is (pure
functions, a schema of hyperparameters, two YAML files), so the library is tested on them and
never on ``project/``, which the user grows."""
