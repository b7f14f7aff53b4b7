"""The run directory and its lifecycle: the folder lock, resolved config, metrics.json record, crash recovery, progress estimates, TensorBoard logs and the run's label."""
