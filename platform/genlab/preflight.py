"""Pre-flight: everything about a spec that can be known on the driver, checked before Ray starts.

``genlab.specs`` validates a spec's shape (types, ranges, unknown keys, cross-field rules). The pre-flight goes on
to what the spec refers to on this machine: dataset files under their root, files the method reads
(``Hparams.check_files``, e.g. pretrained weights), enough labeled images per class,
a batch that fits a worker's shard, demonstrations present and recorded on the run's env, resources the local
Ray can place. A sweep is checked at both ends of every range (and at every choice). Each problem is one line
naming the field and the fix, and all of a spec's problems are reported together, as a :class:`SpecError`.

On a cluster (``RAY_ADDRESS`` set, inside a Ray job, or for ``genlab submit``) the data and demonstrations live on
the cluster's file systems: those checks then happen on the workers, and :func:`check` says so.
"""

from __future__ import annotations

import os

from genlab import datasets, registry
from genlab.errors import SpecError
from genlab.specs import ExpertSpec, RunSpec, SweepSpec, probes


def on_cluster() -> bool:
    from genlab import ray_compat

    return bool(os.environ.get("RAY_ADDRESS")) or ray_compat.in_job()


def check(spec: RunSpec | SweepSpec | ExpertSpec, *, source: str, cluster: bool | None = None,
          num_cpus: float | None = None) -> list[str]:
    """Raise :class:`SpecError` listing every problem; return notes worth printing (checks left to the cluster)."""
    cluster = on_cluster() if cluster is None else cluster
    problems: list[str] = []
    if isinstance(spec, RunSpec):
        problems = run_problems(spec, cluster=cluster)
        run = spec
    elif isinstance(spec, SweepSpec):
        problems = [f"run.{p}" for p in run_problems(spec.run, cluster=cluster)]
        problems += _sweep_problems(spec, cluster)
        run = spec.run
    else:
        run = None
    if not cluster and run is not None:
        problems += _resource_problems(run, num_cpus)
    if problems:
        raise SpecError(f"{source}: pre-flight:\n" + "\n".join(f"  {p}" for p in dict.fromkeys(problems)))
    files = run is not None and run.data is not None and datasets.get(run.data.name).source.ships_with is None
    if cluster and run is not None and (files or run.demos is not None):
        return ["on a cluster, dataset files and demonstrations are checked on the workers, not here"]
    return []


def run_problems(spec: RunSpec, *, cluster: bool) -> list[str]:
    """What is wrong with running ``spec`` here (files, labels, batch size, demonstrations), one line each."""
    method_files = [] if cluster else spec.hparams_obj().check_files(spec.context())
    if spec.data is not None:
        return _data_problems(spec, cluster) + method_files
    if spec.demos is not None and not cluster:
        return _demos_problems(spec) + method_files
    return method_files


def _data_problems(spec: RunSpec, cluster: bool) -> list[str]:
    d, problems = spec.data, []
    entry = datasets.get(d.name)
    if not d.download and not cluster:
        root = datasets.root_of(d.root)
        missing = datasets.missing_files(d.name, root)
        if missing:
            problems.append(f"data.name: {d.name} not found under {root} (data.root, else $GENLAB_DATA, else "
                            f"~/.genlab/data); missing: {', '.join(map(str, missing))}. Set data.download: true "
                            f"(needs a network), or {datasets.how_to_get(d.name, root)}")
            return problems
    shard = entry.train_size // spec.resources.num_workers
    if d.batch_size > shard:
        problems.append(f"data.batch_size: {d.batch_size} is more than the {shard} training images of each worker's "
                        f"shard ({entry.train_size} / {spec.resources.num_workers} workers); lower data.batch_size")
    if d.labels_per_class is not None:
        fewest = datasets.min_class_count(d.name, d.root, d.seed, read_files=not cluster)
        if fewest is not None and d.labels_per_class > fewest[1]:
            problems.append(f"data.labels_per_class: {d.labels_per_class} is more than {d.name}'s class {fewest[0]} "
                            f"has ({fewest[1]} training images); at most {fewest[1]}")
    return problems


def _demos_problems(spec: RunSpec) -> list[str]:
    from genlab.rl.demos import read_meta

    try:
        read_meta(spec.demos.path, spec.env.id, num_trajectories=spec.demos.num_trajectories)
    except FileNotFoundError as e:
        return [f"demos.path: {e}"]
    except ValueError as e:
        field = "demos.num_trajectories" if "trajectories" in str(e) else "demos.path"
        return [f"{field}: {e}"]
    return []


def _sweep_problems(spec: SweepSpec, cluster: bool) -> list[str]:
    """The pre-flight of the run at both ends of every range and at every choice (validation checked their shape)."""
    problems = []
    for path, dim in spec.search_space.items():
        for value, raw in probes(path, dim, spec.run):
            run = RunSpec.model_validate(raw)
            problems += [f"search_space.{path}: at {value!r}: {p}" for p in run_problems(run, cluster=cluster)]
            if not cluster:
                problems += [f"search_space.{path}: at {value!r}: {p}" for p in _resource_problems(run, None)]
    return problems


def _resource_problems(run: RunSpec, num_cpus: float | None) -> list[str]:
    import torch

    cpus = num_cpus or os.cpu_count() or 1
    problems = local_resource_problems(run, cpus_available=cpus, gpus_available=torch.cuda.device_count())
    needed = registry.hparams_class(run.algorithm).local_cpus
    if cpus < needed:
        problems.append(f"--num-cpus: {cpus:g}, but {run.algorithm} needs {needed} CPUs in a local Ray (with fewer "
                        f"it waits forever); pass --num-cpus {needed} or more")
    return problems


def local_resource_problems(spec: RunSpec, *, cpus_available: float, gpus_available: int) -> list[str]:
    """Why the local Ray cluster could never place this run (it would wait forever); empty when it can."""
    r = spec.resources
    problems = []
    if r.gpus_per_worker > 0 and gpus_available == 0:
        problems.append(
            f"resources.gpus_per_worker: {r.gpus_per_worker:g} GPUs asked for, but this machine has none; "
            "set 0 to train on the CPU, or submit to a cluster with GPUs (RAY_ADDRESS / genlab submit)"
        )
    elif r.num_workers * r.gpus_per_worker > gpus_available:
        problems.append(
            f"resources: {r.num_workers} workers x {r.gpus_per_worker:g} GPUs is more than the "
            f"{gpus_available} GPUs here; lower resources.num_workers or resources.gpus_per_worker"
        )
    if r.num_workers * r.cpus_per_worker > cpus_available:
        problems.append(
            f"resources: {r.num_workers} workers x {r.cpus_per_worker:g} CPUs is more than the "
            f"{cpus_available:g} CPUs here; lower resources.num_workers or resources.cpus_per_worker"
        )
    return problems

