"""genlab: reproduce and sweep the 2016 generative models on Ray (Train, Tune, RLlib) with MLflow."""

__version__ = "0.1.0"

RAY_ENV_VARS = {
    # Ray Train V2's controller polls its workers every 2 s and ray.train.report waits for that poll, so each
    # epoch's report waited up to 2 s (docs/performance.md; tests/benchmarks/bench_train_step.py measures it).
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25",
    # Ray Data's default parquet reader starts 32 footer-reader actors, which on a machine with few CPUs made each
    # of BC's reads take tens of seconds.
    "RAY_DATA_USE_DATASOURCE_V2": "0",
    # A trial starts several processes at once (its driver, a Train controller, workers, Train's placement-group
    # cleaner): on a small machine the raylet's default startup concurrency (its CPU count) made it warn that
    # "8 PYTHON worker processes have been started ... 4x the maximum expected startup concurrency" at every sweep.
    "RAY_worker_maximum_startup_concurrency": "8",
}
"""Set in the driver and, through ``ray.init(runtime_env=...)``, in every Ray process of a genlab job."""
