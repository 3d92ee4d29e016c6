"""Ray Jobs: `genlab submit` sends a spec to a cluster as a job whose runtime environment carries genlab.

The job's code reaches every node through Ray's runtime environment, not through whatever happens to
be installed there: ``py_modules`` uploads this genlab package and the ``algorithms`` package (Ray puts
them first on ``PYTHONPATH`` of the job's driver and of every worker it starts, on any node), and
``working_dir`` uploads the directory holding the spec (``sweeps/``). The nodes need the dependencies
(Ray, torch, MLflow, ...) at the versions of constraints.txt; the cluster YAMLs install them.

The same runtime environment as a file, for ``ray job submit --runtime-env``: cluster/runtime_env.yaml
(tests/test_cluster_jobs.py checks that the two agree).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from genlab.errors import SpecError

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
EXCLUDES = [".git", ".venv", ".whl", "results", "mlflow.db", "mlartifacts", "data", "*.pt", "**/__pycache__"]
"""Never uploaded with a job (Ray also honours the working dir's .gitignore)."""


def code_dirs() -> list[Path]:
    """The packages a job ships as py_modules: genlab itself and the algorithms, wherever installed (found, not
    imported: the platform reaches methods only through the registry)."""
    import importlib.util

    return [Path(importlib.util.find_spec(p).origin).parent for p in ("genlab", "algorithms")]


def runtime_env(working_dir: Path, env_vars: dict[str, str] | None = None) -> dict:
    env = {"working_dir": str(working_dir), "py_modules": [str(p) for p in code_dirs()], "excludes": EXCLUDES}
    if env_vars:
        env["env_vars"] = dict(env_vars)
    return env


def dashboard_address(address: str | None = None) -> str:
    """The cluster's job API: --address, else $RAY_API_SERVER_ADDRESS, else an http $RAY_ADDRESS, else local."""
    ray_address = os.environ.get("RAY_ADDRESS", "")
    addr = (address or os.environ.get("RAY_API_SERVER_ADDRESS")
            or (ray_address if ray_address.startswith(("http://", "https://")) else None) or DEFAULT_ADDRESS)
    return addr.rstrip("/")


def _token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
    return Path(path).is_file()


@dataclass
class Submission:
    job_id: str
    address: str
    entrypoint: str

    @property
    def dashboard_url(self) -> str:
        return f"{self.address}/#/jobs/{self.job_id}"


def entrypoint(command: str, spec_path: str, overrides: list[str], storage: str | None) -> str:
    args = ["python", "-m", "genlab", command, spec_path, *[a for o in overrides for a in ("--set", o)]]
    if storage:
        args += ["--storage", storage]
    return shlex.join(args)


def submit(command: str, spec_file: str, overrides: list[str], *, address: str | None = None,
           working_dir: str | Path = ".", storage: str | None = None, tracking_uri: str | None = None,
           env: dict[str, str] | None = None) -> Submission:
    """Submit ``genlab <command> <spec>`` as a Ray job (the spec was validated by the caller)."""
    working_dir = Path(working_dir).resolve()
    spec = Path(spec_file).resolve()
    if not spec.is_relative_to(working_dir):
        raise SpecError(f"{spec_file} is outside the job's working directory {working_dir}, so the job would "
                        f"not have it: run genlab submit from a directory above it, or pass --working-dir")
    if storage and not (storage.startswith("/") or "://" in storage):
        raise SpecError(f"--storage {storage!r} is relative: a job runs in a temporary copy of its working dir, "
                        "so results there are lost; give a path every node shares, e.g. /mnt/genlab/results")
    env_vars = dict(env or {})
    if tracking_uri:
        env_vars["MLFLOW_TRACKING_URI"] = tracking_uri
    if "RAY_AUTH_MODE" not in os.environ and _token_available():
        os.environ["RAY_AUTH_MODE"] = "token"  # Ray's client sends the token only in token mode

    from ray.job_submission import JobSubmissionClient

    addr = dashboard_address(address)
    try:
        client = JobSubmissionClient(addr)
    except ConnectionError as e:
        raise SpecError(f"no Ray job API at {addr} ({e}). Is the cluster up? For a cluster from a YAML in "
                        "cluster/, `ray dashboard cluster/<yaml>` forwards it to http://127.0.0.1:8265; "
                        "or pass --address") from None
    except Exception as e:  # Ray raises RuntimeError / AuthenticationError for a missing or wrong token
        if "auth" in str(e).lower() or "401" in str(e) or "403" in str(e):
            raise SpecError(_token_help(addr, e)) from None
        raise
    ep = entrypoint(command, spec.relative_to(working_dir).as_posix(), overrides, storage)
    try:
        job_id = client.submit_job(entrypoint=ep, runtime_env=runtime_env(working_dir, env_vars),
                                   metadata={"genlab.command": command, "genlab.spec": spec.name})
    except Exception as e:
        if "auth" in str(e).lower() or "Unauthorized" in str(e):
            raise SpecError(_token_help(addr, e)) from None
        raise
    return Submission(job_id=job_id, address=addr, entrypoint=ep)


def _token_help(addr: str, e: Exception) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return (f"the Ray cluster at {addr} refused the request ({first}). Its token auth needs this cluster's token: "
            "export RAY_AUTH_TOKEN=$(ray get-auth-token) on the head, or for a cluster from a YAML in cluster/ "
            "the token file the YAML syncs (~/.ray/auth_token), and RAY_AUTH_MODE=token")


def follow(sub: Submission) -> str:
    """Print the job's logs as they come until it ends; returns its final status (SUCCEEDED, FAILED, STOPPED)."""
    import asyncio

    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(sub.address)

    async def tail() -> None:
        async for lines in client.tail_job_logs(sub.job_id):
            print(lines, end="", flush=True)

    asyncio.run(tail())
    return str(client.get_job_status(sub.job_id).value)
