"""What a person watching a run is told, apart from the engine: the progress bar and log lines
(``progress``), the one-off check of whether the input bounds training (``bottleneck``), and
where the wall time went across restarts (``goodput``)."""
