"""genlab: reproduce and sweep the 2016 generative models on Ray (Train, Tune, RLlib) with MLflow."""

__version__ = "0.1.0"

RAY_ENV_VARS = {
    # Ray Train V2's controller polls its workers every 2 s and ray.train.report waits for that poll,
    # so each epoch's report cost ~1.9 s; at 0.25 s it costs ~0.23 s (tests/benchmarks/bench_train_step.py).
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25",
    # Ray Data's default parquet reader starts 32 footer-reader actors: ~33 s per read on 2 CPUs (BC).
    "RAY_DATA_USE_DATASOURCE_V2": "0",
}
"""Set in the driver and, through ``ray.init(runtime_env=...)``, in every Ray process of a genlab job."""
