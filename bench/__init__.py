"""The benchmark suite. Maintained entry points (run from the repository root):

    peers.py              negspace against implicit ALS/BPR and LightFM WARP (the `bench` extra)
    tune_peers.py         the peers tuned by Optuna on validation, as `negspace tune` tunes negspace
    time_to_quality.py    training seconds until negspace reaches the best peer's validation metric
    kfold.py              every fold of a k-fold dataset: a recipe, the default, ALS
    published_protocol.py the published protocol (epoch chosen on test), labelled as such
    profile_steps.py      where a training step and an evaluation spend their time
    samplers.py           negative samplers' draw speed (`make bench`)
    scale.py              memory and time from 1M to 30M synthetic interactions
    serve_load.py         load on `negspace serve` (client: serve_client.py)
    gpu_bench.py, gpu.sh  GPU against the CPU cores, on the GPU machine
    report.py             docs/results.md from bench/records/*.jsonl (`make results`)

harness.py holds what they share (data and split, timing, machine and load, records);
research/ holds one-off probes whose findings are recorded in docs/results.md or the commit
history.
"""
