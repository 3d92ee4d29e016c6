"""Shared fixtures."""

from __future__ import annotations

import pytest

import genlab


@pytest.fixture(scope="module")
def ray_local():
    """A local 2-CPU Ray for the tests of one module, shut down after them (nothing is left running).

    The dashboard is on: Ray Train's placement-group cleaner needs its state API (see genlab.cli).
    """
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=True, logging_level="ERROR",
             runtime_env={"env_vars": genlab.RAY_ENV_VARS})
    yield
    ray.shutdown()
