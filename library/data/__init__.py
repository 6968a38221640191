"""Data of any schema: file patterns and checks (``files``), tf.data blocks (``pipeline``),
a record writer with manifests and record counts (``records``), corrupt-shard diagnosis
(``diagnose``), predict readers (``readers``), the tf.data service (``service``)."""
