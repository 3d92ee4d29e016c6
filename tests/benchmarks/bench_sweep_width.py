"""Benchmark: trials per hour with N trials at once against N x one trial alone (issue 26 item 4, "a sweep at a
cluster's width").

The workload is the digits demo sweep (sweeps/improved_gan/digits_sweep.yaml: Improved-GAN, 1 CPU a trial) with short
trials (``--epochs``, 3 by default), random search, FIFO (no trial stopped early) and a fixed number of trials
(``--trials``), run through genlab's own sweep path (``launch.start_ray`` with genlab's Ray settings, then
``genlab.runners.sweep.run``, what ``genlab sweep`` does). A sweep with ``max_concurrent=1`` and one with
``max_concurrent=N`` alternate, repeat after repeat, so that machine noise hits both alike. Per sweep:

- wall: from calling ``sweep.run`` to its return (the parent MLflow run, Tune's start, every trial, Tune's end);
- trials/h = trials / wall; efficiency = trials/h(N) / (N x trials/h(1)), 1.0 being perfect scaling;
- per trial (the mean over the sweep's trials): its wall time as the driver sees it (Tune's trial start to trial
  end), the sum of its epochs' training time (``perf/epoch_time_s``) and of its epochs as reported
  (``time_this_iter_s`` from the second epoch on: training, evaluation, sample grid, report), and the start-up
  (trial start to its first report, less that first epoch's own time: Ray Train's worker group, the MLflow run, data)
  and the tail (last report to trial end: Ray Train's shutdown, genlab closing the run).

Two clusters, one after the other:

- ``local``: the machine's own Ray, ``num_cpus=2`` (``genlab sweep --num-cpus 2``), N = ``--width`` (2);
- ``cluster``: the fake multi-node cluster of cluster/local-autoscaling.yaml (Ray's fake_multinode autoscaling
  provider: the autoscaler starts and stops raylets as local processes), started like
  tests/test_cluster_jobs.py starts it (``ray start --head`` with token auth, its own ``--temp-dir`` and ports, 1 CPU
  on the head; stopped at the end by ending exactly its own processes), N = ``--cluster-width`` (2, the YAML's
  ``max_workers``). Trials ask for a logical GPU (``run.resources.gpus_per_worker=1``, ``GENLAB_LOGICAL_GPUS=1``)
  as in that test, so each trial's Ray Train worker needs a node of its own that the autoscaler adds; the driver is
  this process's child, on the head node (``RAY_ADDRESS``). Each sweep starts from the head alone (the benchmark
  waits for the idle nodes to go), so every sweep pays for bringing its nodes up: reported as the seconds from the
  sweep's start to each added node being alive. The fake nodes are processes on this same machine: the cluster has
  no more CPU than ``local``; what the comparison shows is the cluster path's overhead (nodes brought up by the
  autoscaler, placement groups across nodes), not extra compute.

    OMP_NUM_THREADS=1 .venv/bin/python tests/benchmarks/bench_sweep_width.py [--repeats 3] [--cluster-repeats 2] \\
        [--trials 4] [--epochs 3] [--only local|cluster]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "sweeps/improved_gan/digits_sweep.yaml"
BIN = Path(sys.executable).parent
EVENTS: dict[str, dict[str, float]] = {}
"""Trial id -> {"start", "end"}: time.time() in the driver when Tune started and ended the trial (module level: Tune
may use a copy of its callbacks)."""


# ------------------------------------------------------------------------------------------- timing a sweep


def time_trials() -> None:
    """Wrap genlab's progress callback (``trials.progress_lines``, which every sweep installs) so that it also records
    when the driver saw each trial start and end. Its per-epoch lines are left out, to keep this output short."""
    from ray.tune import Callback

    from genlab.runners import trials

    original = trials.progress_lines

    def progress_lines(plan, out=None):
        inner = original(plan, out)

        class Timed(Callback):
            def on_trial_start(self, iteration, trials, trial, **info):
                EVENTS.setdefault(trial.trial_id, {})["start"] = time.time()
                inner.on_trial_start(iteration, trials, trial, **info)

            def on_trial_complete(self, iteration, trials, trial, **info):
                EVENTS.setdefault(trial.trial_id, {})["end"] = time.time()
                inner.on_trial_complete(iteration, trials, trial, **info)

            def on_trial_error(self, iteration, trials, trial, **info):
                EVENTS.setdefault(trial.trial_id, {})["end"] = time.time()
                inner.on_trial_error(iteration, trials, trial, **info)

        return Timed()

    trials.progress_lines = progress_lines


def one_sweep(name: str, width: int, args, tmp: Path, extra: list[str]) -> dict:
    """Run one sweep of ``args.trials`` trials, ``width`` at once; its wall time and per-trial times."""
    from ray.tune import ExperimentAnalysis

    from genlab import config
    from genlab.runners import sweep

    spec = config.load_sweep(SPEC, [f"name={name}", "search=random", "scheduler.type=fifo", "seed=0",
                                    f"num_samples={args.trials}", f"max_concurrent={width}",
                                    f"run.budget.epochs={args.epochs}", "run.budget.eval_every=1",
                                    f"run.budget.checkpoint_every={args.epochs}",
                                    f"run.tracking.uri=sqlite:///{tmp}/mlflow.db", *extra])
    EVENTS.clear()
    t0 = time.time()
    summary = sweep.run(spec, storage_path=tmp / "results")
    t1 = time.time()
    failed = [t.trial_id for t in summary.trials if t.status == "ERROR"]
    per = []
    for df in ExperimentAnalysis(str(summary.sweep_dir)).trial_dataframes.values():
        if not len(df):
            continue
        df = df.sort_values("training_iteration")
        ev = EVENTS.get(str(df["trial_id"].iloc[0]), {})
        if "start" not in ev or "end" not in ev:
            continue
        first, last = df.iloc[0], df.iloc[-1]
        epoch = float(df["time_this_iter_s"].iloc[1:].mean())
        per.append({"wall": ev["end"] - ev["start"], "train": float(df["perf/epoch_time_s"].sum()),
                    "epochs": epoch * len(df), "startup": first["timestamp"] - ev["start"] - epoch,
                    "tail": ev["end"] - last["timestamp"]})
    mean = {k: statistics.mean(p[k] for p in per) for k in per[0]} if per else {}
    return {"width": width, "wall": t1 - t0, "trials": len(summary.trials), "failed": failed, "t0": t0, "t1": t1,
            **{f"trial_{k}": v for k, v in mean.items()}}


def run_part(part: str, args) -> list[dict]:
    """The alternating sweeps of one part, on a Ray this process starts (local) or joins (cluster: RAY_ADDRESS)."""
    import ray

    from genlab import launch

    width, repeats = (args.width, args.repeats) if part == "local" else (args.cluster_width, args.cluster_repeats)
    extra = ["run.resources.gpus_per_worker=1"] if part == "cluster" else []
    nodes = NodeWatch() if part == "cluster" else None
    time_trials()
    for attempt in range(5):  # on a loaded machine the raylet may miss ray.init's fixed 30 s to register
        try:
            launch.start_ray(2 if part == "local" else None, quiet=True)
            break
        except Exception as e:
            ray.shutdown()
            if attempt == 4:
                raise
            print(f"[bench] ray.init failed ({e}); again", flush=True)
            time.sleep(5)
    rows = []
    try:
        if nodes:
            nodes.start()
        with tempfile.TemporaryDirectory(prefix="sweep-width-") as tmp:
            for r in range(repeats):
                for n in (1, width) if r % 2 == 0 else (width, 1):
                    if nodes:
                        nodes.wait_for_head_only(timeout=180)
                    row = {"part": part, "repeat": r, **one_sweep(f"width-{part}-{n}-{r}", n, args, Path(tmp), extra)}
                    if nodes:
                        row["nodes_up"] = nodes.up_between(row["t0"], row["t1"])
                    rows.append(row)
                    print(f"[bench] {line(row)}", flush=True)
    finally:
        if nodes:
            nodes.stop()
        ray.shutdown()
    return rows


class NodeWatch(threading.Thread):
    """Polls Ray's node table every 0.5 s: when each worker node (not the head) was first seen alive, and how many
    worker nodes are alive now."""

    def __init__(self):
        super().__init__(daemon=True)
        self.first_alive: dict[str, float] = {}
        self.workers_alive = 0
        self.done = threading.Event()

    def run(self):
        import ray

        while not self.done.is_set():
            with contextlib.suppress(Exception):
                alive = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU", 0) > 0]
                now = time.time()
                for n in alive:
                    self.first_alive.setdefault(n["NodeID"], now)
                self.workers_alive = len(alive)
            self.done.wait(0.5)

    def up_between(self, t0: float, t1: float) -> list[float]:
        return sorted(round(t - t0, 1) for t in self.first_alive.values() if t0 <= t <= t1)

    def wait_for_head_only(self, timeout: float) -> None:
        deadline = time.time() + timeout
        time.sleep(1.5)
        while self.workers_alive and time.time() < deadline:
            time.sleep(1)

    def stop(self):
        self.done.set()
        self.join(timeout=5)


def line(row: dict) -> str:
    up = f"  nodes up at {row['nodes_up']} s" if "nodes_up" in row else ""
    fail = f"  FAILED {row['failed']}" if row["failed"] else ""
    return (f"{row['part']:7s} repeat {row['repeat']} N={row['width']}  wall {row['wall']:6.1f} s  "
            f"{3600 * row['trials'] / row['wall']:6.0f} trials/h  trial {row.get('trial_wall', float('nan')):5.1f} s "
            f"(train {row.get('trial_train', float('nan')):4.1f}, epochs {row.get('trial_epochs', float('nan')):4.1f}, "
            f"start-up {row.get('trial_startup', float('nan')):4.1f}, tail {row.get('trial_tail', float('nan')):4.1f})"
            f"{up}{fail}")


# ------------------------------------------------------------------------------------------- the fake cluster


def cluster_part(args) -> list[dict]:
    """Start the fake cluster, run the cluster part in a child process that joins it (RAY_ADDRESS, the token), stop
    the cluster."""
    import ray._private.services
    import yaml

    import genlab

    # The cluster test's head: token auth, its own temp dir and ports; stop() ends only its processes.
    sys.path.insert(0, str(ROOT / "tests"))
    from test_cluster_jobs import RayHead

    config = yaml.safe_load((ROOT / "cluster" / "local-autoscaling.yaml").read_text())
    t = time.time()
    for attempt in range(3):  # `ray start` has the same fixed wait for its raylet as ray.init
        try:
            head = RayHead(num_cpus=1, autoscaling=config, extra_env={
                "RAY_FAKE_CLUSTER": "1", "GENLAB_LOGICAL_GPUS": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
                **{k: v for k, v in genlab.RAY_ENV_VARS.items() if k not in os.environ}})
            break
        except RuntimeError as e:
            if attempt == 2:
                raise
            print(f"[bench] {str(e).splitlines()[0]}; again", flush=True)
    gcs = f"{ray._private.services.get_node_ip_address()}:{head.gcs_port}"
    driver_env = {**head.client_env, "RAY_ADDRESS": gcs, "RAY_API_SERVER_ADDRESS": head.address}
    print(f"[bench] fake cluster head up in {time.time() - t:.1f} s at {gcs}", flush=True)
    try:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            cmd = [sys.executable, __file__, "--only", "cluster", "--child-out", out.name,
                   *[a for k in ("trials", "epochs", "cluster_width", "cluster_repeats")
                     for a in (f"--{k.replace('_', '-')}", str(getattr(args, k)))]]
            subprocess.run(cmd, env=driver_env, check=True, cwd=ROOT)
            return json.loads(Path(out.name).read_text())
    finally:
        head.stop()


# ------------------------------------------------------------------------------------------- report


def report(rows: list[dict]) -> None:
    for part in dict.fromkeys(r["part"] for r in rows):
        mine = [r for r in rows if r["part"] == part]
        width = max(r["width"] for r in mine)
        print(f"\n{part}: {mine[0]['trials']} trials a sweep, N=1 and N={width} alternating")
        print("  repeat  N   wall s  trials/h  trial s  train s  epochs s  start-up s  tail s  nodes up at (s)")
        ratios = []
        for rep in sorted({r["repeat"] for r in mine}):
            by = {r["width"]: r for r in mine if r["repeat"] == rep}
            for n in (1, width):
                r = by.get(n)
                if r is None:
                    continue
                print(f"  {rep:6d} {n:2d} {r['wall']:8.1f} {3600 * r['trials'] / r['wall']:9.0f} "
                      f"{r.get('trial_wall', float('nan')):8.1f} {r.get('trial_train', float('nan')):8.1f} "
                      f"{r.get('trial_epochs', float('nan')):9.1f} {r.get('trial_startup', float('nan')):11.1f} "
                      f"{r.get('trial_tail', float('nan')):7.1f}  {r.get('nodes_up', '')}"
                      + (f"  FAILED {r['failed']}" if r["failed"] else ""))
            if 1 in by and width in by:
                one, wide = by[1]["trials"] / by[1]["wall"], by[width]["trials"] / by[width]["wall"]
                ratios.append(wide / (width * one))
                print(f"         efficiency trials/h(N={width}) / ({width} x trials/h(1)) = {ratios[-1]:.2f}")
        if ratios:
            print(f"  median efficiency over {len(ratios)} repeats: {statistics.median(ratios):.2f}  "
                  f"({', '.join(f'{x:.2f}' for x in ratios)})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="local: pairs of sweeps (N=1, N=width)")
    p.add_argument("--cluster-repeats", type=int, default=2, help="fake cluster: pairs of sweeps")
    p.add_argument("--trials", type=int, default=4, help="trials a sweep")
    p.add_argument("--epochs", type=int, default=3, help="epochs a trial")
    p.add_argument("--width", type=int, default=2, help="local: trials at once (N)")
    p.add_argument("--cluster-width", type=int, default=2,
                   help="fake cluster: trials at once (N; cluster/local-autoscaling.yaml allows 2 worker nodes)")
    p.add_argument("--only", choices=["local", "cluster"], default=None)
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (a trial's start-up is its first report less one later epoch's time)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a timeout still stops the fake cluster (finally)

    if args.child_out:  # the cluster part's driver, in the environment that joins the fake cluster
        Path(args.child_out).write_text(json.dumps(run_part("cluster", args)))
        return 0
    print(f"[bench] {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.trials} trials of "
          f"{args.epochs} epochs a sweep", flush=True)
    rows = []
    if args.only in (None, "local"):
        rows += run_part("local", args)
    if args.only in (None, "cluster"):
        rows += cluster_part(args)
    report(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
