"""`make demo` as a new user meets it: the sweep's output reads cleanly from start to end, and every next step it
prints runs as printed (the demo's spec with a shorter budget, so that ASHA still stops trials)."""

from __future__ import annotations

import re
import shlex
import subprocess
import time
import urllib.request

import psutil
import pytest
from conftest import ROOT, free_port, genlab_run

pytestmark = pytest.mark.slow

DEMO = ROOT / "sweeps" / "improved_gan" / "digits_sweep.yaml"
SHORTER = ("--set", "run.budget.epochs=4", "--set", "run.budget.checkpoint_every=2",
           "--set", "scheduler.grace_period=2")
NOISE = ("Traceback", "(TrainController", "(RayTrainWorker", "(raylet)", "(PlacementGroupCleaner", "WARNING", "INFO",
         "Trial status", "╭", "tensorboard", "placement group")
"""What the demo printed before: Ray's tracebacks and actor output of ended trials, Tune's tables, a next step that
was not installed, the placement groups genlab had to remove under a controller that then retried."""


def _next_steps(out: str) -> dict[str, str]:
    """The "Where to look next" block: label -> what follows it."""
    block = out.split("Where to look next:", 1)[1]
    return dict(line.strip().split(":  ", 1) for line in block.strip().splitlines())


def test_the_demo_reads_cleanly_and_each_next_step_runs(tmp_path):
    out = genlab_run(tmp_path, "sweep", DEMO, "--set", "name=demo", *SHORTER, "--num-cpus", "2", timeout=600).stdout

    noise = [line for line in out.splitlines() if any(n in line for n in NOISE)]
    assert not noise, "\n".join(noise)
    lines = out.strip().splitlines()
    assert all(line.startswith(("[genlab]", "Sweep demo", "   trial", "Best trial", "  ", "Where to look next"))
               or re.match(r"^[0-9a-f]{8} ", line) or not line.strip() for line in lines), out
    assert len([line for line in lines if " started: lr=" in line]) == 4
    assert re.search(r"trial \w+ stopped by the scheduler at epoch 2; it keeps that epoch's model", out), out

    steps = _next_steps(out)
    assert set(steps) == {"results (checkpoints, Tune's state)", "MLflow UI", "the runs, in MLflow's training view",
                          "compare runs", "the trained model"}, steps

    runs = subprocess.run(shlex.split(steps["compare runs"]), cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert runs.returncode == 0 and "demo" in runs.stdout, runs.stdout + runs.stderr
    # The best trial's value in the sweep's table is the one `genlab runs` shows for it (the model it keeps).
    best = re.search(r"Best trial: (\w+)  eval/test_error=([\d.]+)", out)
    row = next(r for r in runs.stdout.splitlines() if r.startswith(best.group(1)))
    assert best.group(2) in row.split(), (best.group(0), row)

    load = subprocess.run(shlex.split(steps["the trained model"]), cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert load.returncode == 0 and "64 samples ->" in load.stdout, load.stdout + load.stderr
    assert list(tmp_path.glob("*-samples.png"))

    # The MLflow UI command serves the URL printed below it (on a free port here: 5000 may be taken).
    port = free_port()
    ui = subprocess.Popen([*shlex.split(steps["MLflow UI"]), "--port", str(port)], cwd=tmp_path,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = steps["the runs, in MLflow's training view"].replace(":5000/", f":{port}/")
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(url.split("#")[0], timeout=5) as page:
                    assert page.status == 200
                break
            except OSError:
                assert time.time() < deadline and ui.poll() is None, "mlflow ui did not serve its page"
                time.sleep(1)
        experiment = url.split("/#/experiments/")[1].split("/")[0]
        api = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get?experiment_id={experiment}"
        with urllib.request.urlopen(api, timeout=10) as reply:
            assert b'"genlab"' in reply.read()
    finally:
        procs = [psutil.Process(ui.pid), *psutil.Process(ui.pid).children(recursive=True)]
        for p in procs:
            p.terminate()
        psutil.wait_procs(procs, timeout=10)
