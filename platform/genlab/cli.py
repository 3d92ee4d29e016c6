"""genlab: train | sweep | study | expert | submit | validate | runs | report | load.

The command line parses, calls genlab.launch (the one path every command takes, usable from Python too) or a
reader of MLflow (runs, report, load), and prints. Specs are loaded and validated (with --set overrides) before
Ray starts; Ray is local unless RAY_ADDRESS names a cluster (inside a Ray job it always does). genlab submit sends
a spec to a cluster as a Ray job (genlab.jobs).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from genlab import errors, jobs, launch, plots, registry, runs_table, tracking
from genlab.errors import SpecError
from genlab.launch import STORAGE_ENV


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genlab", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def spec_cmd(name: str, help: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help)
        s.add_argument("spec", help="YAML spec (see sweeps/)")
        s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a field, e.g. --set hparams.lr=1e-3 (repeatable; validated like the file)")
        return s

    for name, help in (("train", "train one run (Ray Train, or RLlib for RL methods)"),
                       ("sweep", "run a Tune + Optuna + ASHA sweep"),
                       ("study", "run a study: every arm x every seed, tagged with the paper claims it measures")):
        s = spec_cmd(name, help)
        s.add_argument("--storage", default=launch.default_storage(),
                       help=f"results folder (default: ${STORAGE_ENV}, else ./results); on a multi-node cluster a "
                            "path every node shares")
        s.add_argument("--resume", action="store_true", help="continue an interrupted run/sweep of this name")
        s.add_argument("--num-cpus", type=float, default=None,
                       help="CPUs of the local Ray instance (default: all); ignored with RAY_ADDRESS")
        if name == "sweep":
            s.add_argument("--register", metavar="NAME", default=None,
                           help="register the best trial's models in MLflow's Model Registry as NAME-<model>")
    e = spec_cmd("expert", "train a PPO expert to a target return and record its demonstrations")
    e.add_argument("--storage", default="results", help="demonstrations go to <storage>/experts/<name>")
    e.add_argument("--force", action="store_true", help="replace existing demonstrations of this name")
    e.add_argument("--num-cpus", type=float, default=None)
    j = spec_cmd("submit", "submit `genlab sweep|train <spec>` to a Ray cluster as a job; prints its id and URL")
    j.add_argument("--address", default=None,
                   help=f"the cluster's job API (default: $RAY_API_SERVER_ADDRESS, else {jobs.DEFAULT_ADDRESS})")
    j.add_argument("--storage", default=None,
                   help=f"results folder on the cluster, shared by its nodes (default: the cluster's ${STORAGE_ENV})")
    j.add_argument("--tracking-uri", default=None,
                   help="MLflow server the job logs to (default: the cluster's $MLFLOW_TRACKING_URI)")
    j.add_argument("--working-dir", default=".", help="uploaded with the job; must contain the spec (default: .)")
    j.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="env var for the job (repeatable)")
    j.add_argument("--follow", action="store_true", help="print the job's logs until it ends; exit 0 if it succeeded")
    v = spec_cmd("validate", "check a run, sweep or expert spec and print it resolved")
    v.add_argument("--cluster", metavar="YAML", default=None,
                   help="instead, check that every trial fits a node type of this cluster (a cluster-launcher YAML "
                        "or KubeRay manifest, e.g. cluster/aws-gpu.yaml) and say which")
    r = sub.add_parser("runs", help="compare the runs of an MLflow experiment")
    r.add_argument("experiment", nargs="?", default="genlab")
    r.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or ./mlflow.db")
    r.add_argument("--max-runs", type=int, default=50)
    r.add_argument("--wide", action="store_true", help="every differing parameter and every metric, not cut to fit")
    rp = sub.add_parser("report", help="the paper-vs-ours page of a study, from MLflow (Markdown and HTML)")
    rp.add_argument("study", help="the study's name (its MLflow parent run)")
    rp.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or ./mlflow.db")
    rp.add_argument("--out", default=None, help="folder for report.md, images/, report.html (default: report-<study>)")
    ld = sub.add_parser("load", help="load a finished run's trained model: sample images, or play episodes")
    ld.add_argument("run_id")
    ld.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or ./mlflow.db")
    ld.add_argument("--out", default=None, help="generative runs: where to write a grid of samples (PNG)")
    ld.add_argument("--num", type=int, default=64, help="generative runs: images in the grid")
    ld.add_argument("--episodes", type=int, default=10, help="RL runs: greedy episodes to play")
    return p


def tool(name: str) -> str:
    """How to call ``name`` (genlab, mlflow) from the shell this command was run in: by name when that shell finds
    this environment's, else by its path in this environment (`make demo` runs genlab from .venv without activating
    it), relative to the working directory when that is shorter."""
    import shutil

    here = Path(sys.executable).parent / name
    if shutil.which(name) and Path(shutil.which(name)).resolve() == here.resolve():
        return name
    relative = os.path.relpath(here)
    return relative if not relative.startswith("..") else str(here)


def _where_next(storage: Path, uri: str, experiment: str, run_id: str | None = None) -> None:
    """The next steps, each a command that runs as printed (tests/test_demo.py runs every one)."""
    where = "" if uri.startswith("sqlite:///") else f" --tracking-uri {uri}"
    print("\nWhere to look next:")
    print(f"  results (checkpoints, Tune's state):  {storage}")
    if uri.startswith("sqlite:///"):
        print(f"  MLflow UI:  {tool('mlflow')} ui --backend-store-uri {uri} --host 127.0.0.1")
    print(f"  the runs, in MLflow's training view:  {tracking.ui_url(uri, experiment)}")
    print(f"  compare runs:  {tool('genlab')} runs {experiment}{where}")
    if run_id:
        print(f"  the trained model:  {tool('genlab')} load {run_id}{where}")


def cmd_train(args) -> int:
    launched = launch.train(args.spec, overrides=args.overrides, storage=args.storage, resume=args.resume,
                            num_cpus=args.num_cpus)
    spec, result = launched.spec, launched.result
    print("\nFinal metrics:")
    for k in registry.metrics(spec.algorithm):
        if k in result.metrics:
            print(f"  {k:28s} {result.metrics[k]:.4g}")
    print(f"  MLflow run id: {result.mlflow_run_id}")
    _where_next(launched.storage, launched.tracking_uri, spec.tracking.experiment, result.mlflow_run_id)
    return 0


def _resume_line(args) -> str:
    """The command that finishes an interrupted sweep or study: this one, with its overrides, and --resume."""
    num_cpus = ["--num-cpus", f"{args.num_cpus:g}"] if args.num_cpus is not None else []
    return shlex.join([tool("genlab"), args.command, args.spec, *[a for o in args.overrides for a in ("--set", o)],
                       "--storage", str(args.storage), *num_cpus, "--resume"])


def cmd_sweep(args) -> int:
    launched = launch.sweep(args.spec, overrides=args.overrides, storage=args.storage, resume=args.resume,
                            num_cpus=args.num_cpus)
    spec, summary = launched.spec, launched.result
    if summary.interrupted:
        print(f"\nSweep {spec.name} interrupted; finish it with:\n  {_resume_line(args)}")
        return 130
    print(f"\nSweep {spec.name}: {len(summary.trials)} trials, ranked by {spec.metric} ({spec.mode}) of the model each "
          "keeps (its last epoch; ASHA-stopped trials: the epoch they stopped at):")
    print(summary.table())
    for t in summary.failed:
        print(f"  trial {t.trial_id} failed: {t.error}")
    best = summary.best
    if best is not None:
        print(f"\nBest trial: {best.trial_id}  {spec.metric}={best.value:.4g}")
        for k, v in sorted(best.params.items()):
            print(f"  {k} = {v}")
        if args.register:
            from genlab.runners import sweep

            for name, version in sweep.register_best(summary, spec, args.register):
                print(f"  registered {name} version {version}  (mlflow.pytorch.load_model('models:/{name}/{version}'))")
    _where_next(summary.sweep_dir, launched.tracking_uri, spec.run.tracking.experiment,
                best.mlflow_run_id if best else None)
    return 0 if best is not None else 1


def cmd_study(args) -> int:
    launched = launch.study(args.spec, overrides=args.overrides, storage=args.storage, resume=args.resume,
                            num_cpus=args.num_cpus)
    spec, summary, uri = launched.spec, launched.result, launched.tracking_uri
    if summary.interrupted:
        print(f"\nStudy {spec.name} interrupted; finish it with:\n  {_resume_line(args)}")
        return 130
    print(f"\nStudy {spec.name}: {summary.runs} runs ({len(spec.arms)} arms x {len(spec.seeds)} seeds), "
          f"{len(summary.failed)} failed")
    for line in summary.failed:
        print(f"  failed: {line}")
    print(f"\nThe paper-vs-ours page:  {tool('genlab')} report {spec.name}" + ("" if uri.startswith("sqlite:///") else
                                                                      f" --tracking-uri {uri}"))
    _where_next(summary.study_dir, uri, spec.tracking.experiment)
    return 0 if len(summary.failed) < summary.runs else 1


def cmd_report(args) -> int:
    from genlab import report

    uri = tracking.resolve_uri(args.tracking_uri)
    md, page = report.build(uri, args.study, Path(args.out or f"report-{args.study}"))
    print(f"{md}\n{page}   (self-contained: open it in a browser)")
    return 0


def cmd_expert(args) -> int:
    launched = launch.expert(args.spec, overrides=args.overrides, storage=args.storage, force=args.force,
                             num_cpus=args.num_cpus)
    path = launched.result
    print(f"\nDemonstrations: {path}   (use it as demos: {{path: {path}}})")
    _where_next(launched.storage, launched.tracking_uri, launched.spec.tracking.experiment)
    return 0


def cmd_submit(args) -> int:
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SpecError(f"--env {item!r}: expected KEY=VALUE")
        env[key] = value
    sub = launch.submit(args.spec, overrides=args.overrides, address=args.address, working_dir=args.working_dir,
                        storage=args.storage, tracking_uri=args.tracking_uri, env=env)
    print(f"[genlab] submitted job {sub.job_id} to {sub.address}\n"
          f"  entrypoint: {sub.entrypoint}\n"
          f"  dashboard:  {sub.dashboard_url}\n"
          f"  logs:       ray job logs --follow {sub.job_id} --address {sub.address}\n"
          f"  stop:       ray job stop {sub.job_id} --address {sub.address}", flush=True)
    if not args.follow:
        return 0
    status = jobs.follow(sub)
    print(f"[genlab] job {sub.job_id}: {status}")
    return 0 if status == "SUCCEEDED" else 1


def cmd_validate(args) -> int:
    import yaml

    if args.cluster:
        print("\n".join(launch.validate_on_cluster(args.spec, args.cluster, args.overrides)))
        return 0
    spec = launch.validate(args.spec, args.overrides)
    print(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def cmd_runs(args) -> int:
    try:
        print(runs_table.runs_table(tracking.resolve_uri(args.tracking_uri), args.experiment, args.max_runs,
                                  wide=args.wide))
    except LookupError as e:
        raise SpecError(str(e)) from None
    return 0


def cmd_load(args) -> int:
    import numpy as np

    from genlab import models

    uri = tracking.resolve_uri(args.tracking_uri)
    try:
        spec = models.run_spec(uri, args.run_id)
    except Exception as e:
        raise SpecError(f"run {args.run_id}: no genlab run spec at {uri} ({type(e).__name__}); is the run id from "
                        "`genlab runs` and the tracking URI the run's?") from None
    if not _has_model(uri, args.run_id, rl=spec.env is not None):
        raise SpecError(f"run {args.run_id} has no trained model to load ({_why_no_model(uri, args.run_id)}); "
                        + _runs_with_models(uri, args.run_id))
    print(f"run {args.run_id}: {spec.algorithm} on {spec.env.id if spec.env else spec.data.name}; MLflow models: "
          + ", ".join(models.model_names(uri, args.run_id)))
    if spec.env is not None:
        returns = models.play(args.run_id, uri, args.episodes)
        print(f"{args.episodes} greedy episodes of {spec.env.id}: mean return {np.mean(returns):.4g} "
              f"(std {np.std(returns):.3g})")
        return 0
    out = Path(args.out or f"{spec.name}-samples.png")
    plots.grid_image(models.load(args.run_id, uri).sample(args.num)).save(out)
    print(f"{args.num} samples -> {out}")
    return 0


def _has_model(uri: str, run_id: str, *, rl: bool) -> bool:
    """Whether `genlab load` can rebuild the run's model: a generative run's final checkpoint, an RL run's policy."""
    from genlab import models
    from genlab.runners.storage import CHECKPOINT_ARTIFACT, GENERATIVE_STATE

    if rl:
        return "policy" in models.model_names(uri, run_id)
    return GENERATIVE_STATE in [p.rsplit("/", 1)[-1] for p in tracking.artifact_paths(uri, run_id, CHECKPOINT_ARTIFACT)]


def _why_no_model(uri: str, run_id: str) -> str:
    run = tracking.client(uri).get_run(run_id)
    if run.info.status == "FAILED":
        return f"it failed: {run.data.tags.get(tracking.TAG_ERROR, 'see its error.txt')}"
    if run.info.status == "RUNNING":
        return "it is still running; its model is logged at its end"
    return f"it ended {run.info.status} before its first checkpoint"


def _runs_with_models(uri: str, run_id: str) -> str:
    """A hint naming the latest runs of the same experiment that have a model."""
    experiment_id = tracking.client(uri).get_run(run_id).info.experiment_id
    found = [r for r in tracking.search(uri, "attributes.status = 'FINISHED'", experiment_ids=[experiment_id],
                                        max_results=20, newest_first=True)
             if r.info.run_id != run_id and r.data.tags.get(tracking.TAG_KIND) in ("train", "rl")
             and _has_model(uri, r.info.run_id, rl=r.data.tags[tracking.TAG_KIND] == "rl")][:3]
    if not found:
        return "no other run of its experiment has one yet"
    return "runs with one: " + ", ".join(f"{tool('genlab')} load {r.info.run_id} ({r.info.run_name})" for r in found)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Runs opened in other processes (sweep trials) record the command the user typed. Called as a library
    # (argv given), the command is that argv and the caller's environment is left as it was.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line per result, not bars
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # not its "Creating initial database tables" lines
    saved = os.environ.get(tracking.COMMAND_ENV)
    if argv is None:
        os.environ.setdefault(tracking.COMMAND_ENV, tracking.command())
    else:
        os.environ[tracking.COMMAND_ENV] = shlex.join(["genlab", *map(str, argv)])
    try:
        return {"train": cmd_train, "sweep": cmd_sweep, "study": cmd_study, "expert": cmd_expert,
                "submit": cmd_submit, "validate": cmd_validate, "runs": cmd_runs, "report": cmd_report,
                "load": cmd_load}[args.command](args)
    except SpecError as e:
        print(f"genlab: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if not errors.not_retryable(e):
            raise
        # A run that failed for a reason a retry cannot fix: Ray printed the worker's traceback above; the reason,
        # once, is the last line (it is also the run's genlab.error tag in MLflow).
        print(f"\ngenlab: error: {errors.summary(e)}", file=sys.stderr)
        return 1
    finally:
        if argv is not None:
            if saved is None:
                os.environ.pop(tracking.COMMAND_ENV, None)
            else:
                os.environ[tracking.COMMAND_ENV] = saved
