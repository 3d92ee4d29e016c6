"""Benchmark: MLflow under N trials logging at once (issue 26 item 4, "a sweep at a cluster's width").

N writer processes start together (a barrier) and each does to its MLflow run what a genlab generative trial does,
through genlab's own code: ``genlab.runlog.run_scope`` opens the run (``tracking.open_run``: the run, its tags, the
resolved spec of ``--spec`` as params, ``spec/*`` artifacts) and the run's ``RunLogger`` logs a placement tag. Once
every writer has its run open (a second barrier: all N log at once), each logs M epochs of ``--metrics`` metrics
(``RunLogger.metrics``: one outbox item and one ``log_batch`` per epoch, as rank 0 of a Ray Train run logs an epoch),
then a couple of small artifacts (a text file and a small ``checkpoint/state.pt``, as ``log_final`` logs a run's
checkpoint) and the run's end, and waits until MLflow has it all (the outbox flushed). Epochs go back to back
(``--interval 0``): the numbers say what the store can take, not what a trial asks of it. ``--grid-every K`` adds a
sample grid every K epochs (``RunLogger.image_grid``: a PNG of 100 8x8 samples, two files uploaded), as each eval
epoch of a digits run does.

Stores: ``sqlite`` (``sqlite:///<dir>/mlflow.db``, the default local store: every writer opens the database file
itself) and ``server`` (an MLflow tracking server on loopback, backed by SQLite, started by cluster/start_mlflow.sh as
a cluster's head starts it: ``mlflow server --workers 1 --backend-store-uri sqlite:///... --artifacts-destination
...``, stopped at the end). Reported per store and N:

- epochs/s: N x M over the time from the second barrier to the last epoch in MLflow, all writers together;
  ratio = epochs/s(N) / (N x epochs/s(1)), 1.0 being perfect scaling;
- put p50/p95: the call training waits on, ``RunLogger.metrics`` (it writes the item into the run's outbox on disk);
- log_batch p50/p95: the outbox sender's ``MlflowClient.log_batch`` of one epoch (what reaching MLflow costs);
- held p50/p95/max: how long an epoch's item stayed in the outbox (put -> in MLflow): with epochs back to back this
  is mostly the queue behind it;
- open p50/max: ``open_run`` (create run, params, 3 artifacts), N at once; trial s: max over writers of open -> run
  ended;
- CPU ms/epoch: the writers' CPU (opening and closing their runs included) and the server's processes' CPU, per
  epoch logged;
- errors: failed deliveries (the sender retried them: ``retries``) by reason, items MLflow refused, writers that
  failed; "locked": SQLite's "database is locked" seen by MLflow's store (in the writers, or in the server's log);
  http!=200: non-2xx answers in the server's access log (MLflow's HTTP client retries 429/5xx by itself).

    OMP_NUM_THREADS=1 .venv/bin/python tests/benchmarks/bench_tracking_width.py --writers 1 2 4 8 16 --epochs 20
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing as mp
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
METRICS = ["loss/d", "loss/sup", "loss/unsup", "loss/gen", "loss/gen_fm", "disc/train_accuracy", "disc/real_prob",
           "disc/fake_prob", "epoch", "perf/images_per_s", "perf/epoch_time_s", "eval/test_error",
           "eval/test_error_raw", "eval/test_accuracy", "eval/classifier_score", "eval/classifier_score_std",
           "eval/fcd", "eval/score_classifier_accuracy", "eval/inception_score", "eval/fid"]
"""The shape of a digits Improved-GAN epoch: its losses, perf/* and the latest eval/* (every report carries them)."""


# ------------------------------------------------------------------------------------------- one writer (a trial)


def writer(i: int, uri: str, experiment: str, args, spec: dict, root: Path, barriers, results) -> None:
    """One trial's MLflow traffic through genlab's code, timed; its numbers go to ``results``."""
    import torch

    from genlab import mlflow_http, outbox, runlog, tracking

    rec = {"writer": i, "put": [], "deliver": [], "grid": [], "grid_put": [], "held": [], "errors": [], "refused": 0,
           "locked": 0}
    put_at: dict[int, tuple[float, str]] = {}  # seq -> (when put was called, kind)
    done_at: dict[int, float] = {}  # seq -> when MLflow had it (the sender may get there before put returns)

    # Instrument the outbox of this process (the class is patched in this writer's process only).
    box = outbox.Outbox
    orig_put, orig_deliver, orig_done, orig_refuse = box.put, box._deliver, box._done, box._refuse

    def put(self, item, write=None):
        t = time.monotonic()
        orig_put(self, item, write)
        put_at[self._next - 1] = (t, item["kind"])  # only this writer's main thread puts

    def deliver(self, c, seq, item):
        t0 = time.monotonic()
        try:
            orig_deliver(self, c, seq, item)
        except Exception as e:
            rec["errors"].append(f"{'retried' if mlflow_http.transient(e) else 'refused'}: {_gist(e)}")
            raise
        if item["kind"] == "metrics":
            rec["deliver"].append(time.monotonic() - t0)
        elif item["kind"] == "artifacts" and item["artifact_dir"] == "samples":
            rec["grid"].append(time.monotonic() - t0)

    def done(self, seq):
        orig_done(self, seq)
        done_at[seq] = time.monotonic()

    def refuse(self, seq, item, e):
        rec["refused"] += 1
        orig_refuse(self, seq, item, e)

    box.put, box._deliver, box._done, box._refuse = put, deliver, done, refuse

    class CountLocked(logging.Filter):  # MLflow's SQLite store logs every OperationalError with its traceback
        def filter(self, record):
            if "database is locked" in record.getMessage():
                rec["locked"] += 1
            return False

    logging.getLogger("mlflow.store.db.utils").addFilter(CountLocked())

    state = root / f"w{i}" / "state.pt"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_bytes(os.urandom(args.artifact_kb * 1024))
    start, together = barriers
    start.wait(timeout=args.timeout)
    t0, cpu0 = time.monotonic(), time.process_time()
    waited = False
    try:
        with runlog.run_scope(uri, experiment, run_name=f"writer-{i}", config=spec,
                              tags={tracking.TAG_TRIAL: f"w{i}", tracking.TAG_KIND: "train"},
                              outbox=root / f"w{i}" / outbox.OUTBOX) as logger:
            rec["open"] = time.monotonic() - t0
            logger.tags({tracking.TAG_DEVICE: "cpu", tracking.TAG_CODE: tracking.code_path()})
            waited = True
            together.wait(timeout=args.timeout)  # every run is open: the N writers log their epochs at once
            rec["first_put"] = time.monotonic()
            for epoch in range(1, args.epochs + 1):
                if args.grid_every and epoch % args.grid_every == 0:  # as an eval epoch logs its sample grid
                    t = time.monotonic()
                    logger.image_grid("samples", torch.rand(100, 1, 8, 8) * 2 - 1, epoch, nrow=10)
                    rec["grid_put"].append(time.monotonic() - t)
                values = {k: (epoch if k == "epoch" else 1.0 / (epoch + j)) for j, k in enumerate(_names(args))}
                t = time.monotonic()
                logger.metrics(values, step=epoch)
                rec["put"].append(time.monotonic() - t)
                if args.interval:
                    time.sleep(args.interval)
            logger.text(f"writer {i}: {args.epochs} epochs\n", "sweep/notes.txt")
            logger.file(state, "checkpoint")
        rec["ok"] = not logger.outbox.held()
    except Exception as e:
        rec["ok"] = False
        rec["errors"].append(f"writer failed: {_gist(e)}")
        if not waited:  # the others wait for this writer at the second barrier
            together.wait(timeout=args.timeout)
    rec["trial"] = time.monotonic() - t0
    rec["cpu"] = time.process_time() - cpu0
    metric_items = [seq for seq, (_, kind) in put_at.items() if kind == "metrics"]
    rec["held"] = [done_at[seq] - put_at[seq][0] for seq in metric_items if seq in done_at]
    rec["last_metric_done"] = max((done_at[seq] for seq in metric_items if seq in done_at), default=0.0)
    rec["still_held"] = sum(seq not in done_at for seq in put_at)
    results.put(rec)


def _names(args) -> list[str]:
    return (METRICS + [f"extra/m{j}" for j in range(max(0, args.metrics - len(METRICS)))])[:args.metrics]


def _gist(e: BaseException) -> str:
    text = " ".join(str(e).split())
    for gist in ("database is locked", "Connection refused", "timed out", "Connection reset", "UNIQUE constraint"):
        if gist in text:
            return gist
    return f"{type(e).__name__}: {text[:120]}"


# ------------------------------------------------------------------------------------------- a store, N writers


def run_width(store: str, uri: str, n: int, args, spec: dict, root: Path) -> dict:
    ctx = mp.get_context("fork")  # the parent has imported genlab and MLflow: a writer starts in milliseconds
    barriers, results = (ctx.Barrier(n), ctx.Barrier(n)), ctx.Queue()
    experiment = f"width-{store}-{n}"
    procs = [ctx.Process(target=writer, args=(i, uri, experiment, args, spec, root / f"{store}-{n}",
                                                         barriers, results))
             for i in range(n)]
    for p in procs:
        p.start()
    recs = [results.get(timeout=args.timeout) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    ok = [r for r in recs if r.get("first_put")]
    start = min(r["first_put"] for r in ok) if ok else 0.0
    stop = max(r["last_metric_done"] for r in ok) if ok else 0.0
    delivered = sum(len(r["held"]) for r in recs)
    errors = Counter(e for r in recs for e in r["errors"])
    return {"store": store, "n": n, "epochs": delivered, "expected": n * args.epochs,
            "epochs_per_s": delivered / (stop - start) if stop > start else 0.0,
            "put": _pct([x for r in recs for x in r["put"]]),
            "log_batch": _pct([x for r in recs for x in r["deliver"]]),
            "grid_upload": _pct([x for r in recs for x in r["grid"]]),
            "grid_put": _pct([x for r in recs for x in r["grid_put"]]),
            "held": _pct([x for r in recs for x in r["held"]], with_max=True),
            "open": _pct([r["open"] for r in recs if "open" in r], with_max=True),
            "trial_s": max(r["trial"] for r in recs),
            "writer_cpu_s": sum(r.get("cpu", 0.0) for r in recs),
            "retries": sum(v for k, v in errors.items() if k.startswith("retried")),
            "errors": dict(errors), "refused": sum(r["refused"] for r in recs),
            "locked": sum(r["locked"] for r in recs), "failed_writers": sum(not r["ok"] for r in recs),
            "still_held": sum(r["still_held"] for r in recs)}


def _pct(xs: list[float], with_max: bool = False) -> dict:
    if not xs:
        return {}
    xs = sorted(xs)
    out = {"p50": statistics.median(xs), "p95": xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]}
    if with_max:
        out["max"] = xs[-1]
    return out


def _in_child(fn, *a) -> None:
    """``fn(*a)`` in a forked process: the parent never opens the store (an SQLAlchemy engine must not cross fork)."""
    p = mp.get_context("fork").Process(target=fn, args=a)
    p.start()
    p.join()
    if p.exitcode != 0:
        raise RuntimeError(f"{fn.__name__} failed (exit {p.exitcode})")


def _create_experiments(uri: str, names: list[str]) -> None:
    from genlab import tracking

    for name in names:  # a sweep's driver has made the experiment before its trials start
        tracking.experiment_id(uri, name)


# ------------------------------------------------------------------------------------------- the server


def start_server(folder: Path) -> tuple[str, Path]:
    """cluster/start_mlflow.sh on 127.0.0.1 and a free port, its stores in ``folder``: (its URL, its pid file)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GENLAB_MLFLOW_HOST": "127.0.0.1", "GENLAB_MLFLOW_PORT": str(port),
           "GENLAB_MLFLOW_DIR": str(folder), "MLFLOW_BIN": str(Path(sys.executable).parent / "mlflow")}
    out = subprocess.run(["bash", str(ROOT / "cluster" / "start_mlflow.sh")], env=env, capture_output=True,
                         text=True, timeout=180)
    if out.returncode != 0:
        raise RuntimeError(f"start_mlflow.sh failed: {out.stderr}")
    return out.stdout.strip().splitlines()[-1], folder / "server.pid"


def server_cpu(pid_file: Path) -> float:
    """CPU seconds (user + system) of the server's processes so far: ``mlflow server``, uvicorn, MLflow's job runner
    and its huey consumers."""
    import psutil

    total = 0.0
    try:
        server = psutil.Process(int(pid_file.read_text()))
        for p in [server, *server.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += sum(p.cpu_times()[:2])
    except (OSError, ValueError, psutil.NoSuchProcess):
        pass
    return total


def settle(pid_file: Path, limit_s: float = 300.0, quiet_s: int = 5) -> float:
    """Wait until every process of the server sleeps, the same processes for ``quiet_s`` polls (1 s apart): MLflow
    3.17's job runner starts its huey consumers after /health answers, and on a busy 2-core machine their start takes
    the cores for a minute or more. (Process states, not CPU time: a starved process that is still starting uses
    little CPU but is runnable.) Returns the seconds waited."""
    import psutil

    t0, quiet, last = time.monotonic(), 0, None
    while time.monotonic() - t0 < limit_s and quiet < quiet_s:
        time.sleep(1)
        try:
            server = psutil.Process(int(pid_file.read_text()))
            procs = [server, *server.children(recursive=True)]
            states = {p.pid: p.status() for p in procs}
        except (OSError, ValueError, psutil.NoSuchProcess):
            quiet = 0
            continue
        idle = all(st in (psutil.STATUS_SLEEPING, psutil.STATUS_IDLE, psutil.STATUS_ZOMBIE) for st in states.values())
        quiet = quiet + 1 if idle and set(states) == last else 0
        last = set(states)
    return time.monotonic() - t0


def stop_server(pid_file: Path) -> None:
    import psutil

    try:
        server = psutil.Process(int(pid_file.read_text()))
    except (OSError, ValueError, psutil.NoSuchProcess):
        return
    procs = [server, *server.children(recursive=True)]
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=15)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


def server_log_counts(log: Path, since: int) -> tuple[Counter, int, int]:
    """HTTP statuses of the server's access log from byte ``since`` on, its "database is locked" lines, its end."""
    text = log.read_bytes()[since:].decode(errors="replace") if log.exists() else ""
    statuses = Counter(m.group(1) for m in re.finditer(r'HTTP/1\.[01]" (\d{3})', text))
    return statuses, text.count("database is locked"), since + len(text.encode())


# ------------------------------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--epochs", type=int, default=20, help="M: epochs each writer logs")
    p.add_argument("--metrics", type=int, default=20, help="metrics per epoch (one log_batch)")
    p.add_argument("--stores", nargs="+", default=["sqlite", "server"], choices=["sqlite", "server"])
    p.add_argument("--spec", default="sweeps/improved_gan/digits_sweep.yaml",
                   help="the run spec whose resolved config each run logs as params (a sweep's run: section)")
    p.add_argument("--artifact-kb", type=int, default=64, help="size of the small checkpoint/state.pt artifact")
    p.add_argument("--grid-every", type=int, default=0,
                   help="log a 10x10 grid of 8x8 samples every this many epochs (RunLogger.image_grid: two PNGs, as "
                        "an eval epoch of a digits run does); 0: none")
    p.add_argument("--interval", type=float, default=0.0, help="seconds between a writer's epochs (0: back to back)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for one writer")
    p.add_argument("--dir", default=None, help="where the stores go (default: a temporary folder, removed)")
    p.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = p.parse_args()

    # Imported once here, so that forked writers start without paying for it.
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    import mlflow.tracking  # noqa: F401
    import torch  # noqa: F401
    import torchvision.utils  # noqa: F401

    from genlab import config, outbox, runlog, tracking  # noqa: F401

    spec_path = ROOT / args.spec
    raw = config.read_yaml(spec_path)
    spec = (config.load_sweep(spec_path).run if config.is_sweep(raw) else config.load_run(spec_path))
    spec = spec.model_dump(mode="json")
    if threading.active_count() > 1:
        print(f"[bench] warning: {threading.active_count()} threads before forking writers", flush=True)

    tmp = tempfile.TemporaryDirectory(prefix="bench-tracking-") if args.dir is None else None
    root = Path(args.dir or tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    command = "OMP_NUM_THREADS=1 .venv/bin/python tests/benchmarks/bench_tracking_width.py " + shlex.join(sys.argv[1:])
    rows = []
    t_all = time.monotonic()
    try:
        for store in args.stores:
            pid_file = log = None
            try:
                t = time.monotonic()
                if store == "sqlite":
                    uri = f"sqlite:///{root / 'sqlite' / 'mlflow.db'}"
                    (root / "sqlite").mkdir(exist_ok=True)
                else:
                    uri, pid_file = start_server(root / "server")
                    log = root / "server" / "server.log"
                    up = time.monotonic() - t
                    waited = settle(pid_file)
                    print(f"[bench] server: /health answered after {up:.1f} s, its processes all asleep {waited:.0f} "
                          f"s later, {server_cpu(pid_file):.1f} CPU s used to start", flush=True)
                _in_child(_create_experiments, uri, [f"width-{store}-{n}" for n in args.writers])
                print(f"[bench] {store}: {uri} ready in {time.monotonic() - t:.1f} s", flush=True)
                at = log.stat().st_size if log is not None and log.exists() else 0
                for n in args.writers:
                    cpu0 = server_cpu(pid_file) if pid_file is not None else 0.0
                    row = run_width(store, uri, n, args, spec, root)
                    if log is not None:
                        statuses, locked, at = server_log_counts(log, at)
                        row["http"] = dict(statuses)
                        row["locked"] += locked
                        row["server_cpu_s"] = server_cpu(pid_file) - cpu0
                    rows.append(row)
                    print("[bench] " + json.dumps(row), flush=True)
            finally:
                if pid_file is not None:
                    stop_server(pid_file)
    finally:
        if tmp is not None:
            tmp.cleanup()

    base = {r["store"]: r["epochs_per_s"] for r in rows if r["n"] == 1}
    grids = f", a sample grid every {args.grid_every} epochs" if args.grid_every else ""
    print(f"\n{command}\n{len(_names(args))} metrics per epoch{grids}, {args.epochs} epochs per writer, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, {time.monotonic() - t_all:.0f} s in all\n")
    print("| store | N | epochs/s | ratio to N x (N=1) | put p50/p95 ms | log_batch p50/p95 ms | held p50/p95/max s "
          "| open p50/max s | trial s | errors (retries) | locked | http!=200 | CPU ms/epoch writers + server |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["epochs_per_s"] / (r["n"] * base[r["store"]]) if base.get(r["store"]) else float("nan")
        errs = sum(r["errors"].values()) + r["refused"]
        bad_http = sum(v for k, v in r.get("http", {}).items() if not k.startswith("2"))
        lost = "" if r["epochs"] == r["expected"] else f" ({r['expected'] - r['epochs']} epochs not logged)"
        print(f"| {r['store']} | {r['n']} | {r['epochs_per_s']:.1f}{lost} | {ratio:.2f} "
              f"| {_ms(r['put'])} | {_ms(r['log_batch'])} "
              f"| {r['held'].get('p50', 0):.2f} / {r['held'].get('p95', 0):.2f} / {r['held'].get('max', 0):.2f} "
              f"| {r['open'].get('p50', 0):.2f} / {r['open'].get('max', 0):.2f} | {r['trial_s']:.1f} "
              f"| {errs} ({r['retries']}) | {r['locked']} | {bad_http if 'http' in r else '-'} "
              f"| {_per_epoch(r, 'writer_cpu_s')} + {_per_epoch(r, 'server_cpu_s')} |")
    for r in rows:
        if r["grid_upload"]:
            print(f"[bench] {r['store']} N={r['n']}: sample grid: RunLogger.image_grid p50/p95 "
                  f"{_ms(r['grid_put'])} ms, its log_artifacts (2 PNGs) {_ms(r['grid_upload'])} ms")
    for r in rows:
        if r["errors"] or r["failed_writers"] or r["still_held"]:
            print(f"[bench] {r['store']} N={r['n']}: {r['errors']}, failed writers {r['failed_writers']}, "
                  f"items still held {r['still_held']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "rows": rows}, indent=1))


def _per_epoch(r: dict, key: str) -> str:
    return f"{1000 * r[key] / r['epochs']:.0f}" if key in r and r["epochs"] else "-"


def _ms(d: dict) -> str:
    return f"{1000 * d.get('p50', 0):.1f} / {1000 * d.get('p95', 0):.1f}" if d else "-"


if __name__ == "__main__":
    main()
