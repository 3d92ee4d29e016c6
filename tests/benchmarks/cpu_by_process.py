"""Where a command's CPU time goes, per kind of process: runs the command, polls every process that starts while it
runs (Ray's GCS, raylet, dashboard, each actor by its class name, the command itself) and prints CPU-seconds per kind.

    .venv/bin/python tests/benchmarks/cpu_by_process.py genlab train sweeps/improved_gan/digits.yaml \\
        --set budget.epochs=2 --set budget.eval_every=2 --set budget.checkpoint_every=2 --num-cpus 2

Polled every 0.3 s, so a process that lives shorter than that is missed and one's last 0.3 s may be; processes that
ran before the command are left out. The command's output goes to cpu_by_process.out in the working directory.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import time
from pathlib import Path

import psutil

KINDS = ("dashboard/agent.py", "dashboard/dashboard.py", "runtime_env/agent", "log_monitor",
         "autoscaler/_private/monitor", "gcs_server", "raylet", "ray-dashboard", "forkserver", "mlflow", "genlab")


def kind(p: psutil.Process) -> str:
    argv = p.cmdline()
    if argv and argv[0].startswith("ray::"):  # a Ray worker: "ray::<actor class>.<method>" (name() is cut at 15)
        return argv[0].split(".")[0]
    program = [Path(a).name for a in argv[:3]]  # python -m genlab ..., .venv/bin/genlab ..., .venv/bin/mlflow server
    if "genlab" in program or "mlflow" in program:
        return "genlab" if "genlab" in program else "mlflow"
    cmd = " ".join(argv) or p.name()
    if "multiprocessing.spawn" in cmd or "multiprocessing.forkserver" in cmd:  # a worker of its parent's pool
        try:
            return f"{kind(p.parent())} > multiprocessing"
        except (AttributeError, psutil.Error):
            pass
    return next((k for k in KINDS if k in cmd), cmd[:60])


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: cpu_by_process.py COMMAND [ARGS...]")
    before = {p.pid for p in psutil.process_iter()}
    cpu: dict[int, float] = {}
    names: dict[int, str] = {}
    start = time.time()
    with open("cpu_by_process.out", "w") as out:
        proc = subprocess.Popen(sys.argv[1:], stdout=out, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            for p in psutil.process_iter():
                if p.pid in before:
                    continue
                try:
                    t = p.cpu_times()
                    names[p.pid] = kind(p)  # a Ray worker takes its actor's name once it hosts one
                    cpu[p.pid] = max(cpu.get(p.pid, 0.0), t.user + t.system)
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    pass
            time.sleep(0.3)
    total, count = collections.Counter(), collections.Counter()
    for pid, seconds in cpu.items():
        total[names[pid]] += seconds
        count[names[pid]] += 1
    print(f"wall {time.time() - start:.0f} s, CPU {sum(total.values()):.0f} s (exit code {proc.returncode})")
    for name, seconds in total.most_common():
        print(f"{seconds:7.1f} s  x{count[name]:<3} {name}")


if __name__ == "__main__":
    main()
