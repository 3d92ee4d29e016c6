"""genlab: reproduce and sweep the 2016 generative models on Ray (Train, Tune, RLlib) with MLflow."""

import warnings

__version__ = "0.1.0"

# dm_control (imported with RLlib) and MuJoCo load a GLFW window backend unless MUJOCO_GL names another, and GLFW
# warns "X11: The DISPLAY environment variable is missing" on every headless machine. genlab never opens a window.
warnings.filterwarnings("ignore", message=r".*The DISPLAY environment variable is missing")

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
    # On a loaded machine the raylet's dashboard agent can take longer to register than the raylet waits for it;
    # the raylet then aborts and ray.init fails ("Failed to start the raylet"). Two minutes instead.
    "RAY_agent_register_timeout_ms": "120000",
}
"""Set in the driver and, through ``ray.init(runtime_env=...)``, in every Ray process of a genlab job."""
