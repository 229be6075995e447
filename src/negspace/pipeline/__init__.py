"""The application layer: one `fit` path (data -> split -> resolve -> build -> train -> refit ->
run directory) behind the CLI, the Python API, the tuner, the grid and `--nproc` workers."""
