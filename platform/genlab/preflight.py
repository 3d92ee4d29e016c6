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
from dataclasses import dataclass
from pathlib import Path

from genlab import datasets, registry
from genlab.errors import SpecError
from genlab.specs import ExpertSpec, RunSpec
from genlab.sweep_specs import SweepSpec, probes


def on_cluster() -> bool:
    from genlab import ray_compat

    return bool(os.environ.get("RAY_ADDRESS")) or ray_compat.in_job()


def check(spec: RunSpec | SweepSpec | ExpertSpec, *, source: str, cluster: bool | None = None,
          num_cpus: float | None = None, in_tune: bool = False) -> list[str]:
    """Raise :class:`SpecError` listing every problem; return notes worth printing (checks left to the cluster).
    ``in_tune``: a run spec that runs as a Tune trial (a study's arm)."""
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
        problems += _resource_problems(run, num_cpus, in_tune=in_tune or isinstance(spec, SweepSpec))
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
                problems += [f"search_space.{path}: at {value!r}: {p}"
                             for p in _resource_problems(run, None, in_tune=True)]
    return problems


def _resource_problems(run: RunSpec, num_cpus: float | None, *, in_tune: bool = False) -> list[str]:
    import torch

    cpus = num_cpus or os.cpu_count() or 1
    problems = local_resource_problems(run, cpus_available=cpus, gpus_available=torch.cuda.device_count(),
                                       in_tune=in_tune)
    problems += fast_path_problems(run, gpus_available=torch.cuda.device_count())
    needed = registry.hparams_class(run.algorithm).local_cpus
    if cpus < needed:
        problems.append(f"--num-cpus: {cpus:g}, but {run.algorithm} needs {needed} CPUs in a local Ray (with fewer "
                        f"it waits forever); pass --num-cpus {needed} or more")
    return problems


def fast_path_problems(spec: RunSpec, *, gpus_available: int) -> list[str]:
    """Why the devices a local Ray would train ``spec`` on cannot run its ``perf`` settings (bf16 on a GPU without
    bf16 math, torch.compile without a C++ compiler or triton): the CPU, or each of this machine's GPUs when the
    spec asks for GPUs (none: local_resource_problems says so). On a cluster each worker checks its own device."""
    from genlab import fastpath

    if fastpath.is_default(spec.perf):
        return []
    if spec.resources.gpus_per_worker == 0 or os.environ.get("GENLAB_LOGICAL_GPUS") == "1":
        devices = ["cpu"]  # logical GPUs (Ray's fake_multinode) compute on the CPU: genlab.runners.generative
    else:
        devices = [f"cuda:{i}" for i in range(gpus_available)]
    return [p for device in devices for p in fastpath.device_problems(spec.perf, device)]


def local_resource_problems(spec: RunSpec, *, cpus_available: float, gpus_available: int,
                            in_tune: bool = False) -> list[str]:
    """Why the local Ray cluster could never place this run (it would wait forever); empty when it can. ``in_tune``:
    as a trial of a sweep or study, whose own process holds CPUs too."""
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
    elif spec.rl is not None:
        problems += _rl_resource_problems(spec, cpus_available, gpus_available, in_tune)
    return problems


def _rl_resource_problems(spec: RunSpec, cpus: float, gpus: int, in_tune: bool) -> list[str]:
    """Why a local Ray could never start an RL run's env runners and learners (they would wait forever: RLlib's
    actors wait for their CPUs and GPUs without a word). Outside Tune the run's own process is the driver and holds
    nothing; a Tune trial also holds ``resources.cpus_per_worker`` for it (RLlib's request, ``runners.trials``)."""
    rl, problems = spec.rl, []
    gpus_needed = rl.gpus_per_learner * max(1, rl.learners)
    if gpus_needed and not gpus:
        problems.append(f"rl.gpus_per_learner: {rl.gpus_per_learner:g} GPUs asked for, but this machine has none; "
                        "set 0 to learn on the CPU, or submit to a cluster with GPUs (RAY_ADDRESS / genlab submit)")
    elif gpus_needed > gpus:
        problems.append(f"rl: {max(1, rl.learners)} learners x {rl.gpus_per_learner:g} GPUs is more than the {gpus} "
                        "GPUs here; lower rl.learners or rl.gpus_per_learner")
    parts = [(rl.env_runners, rl.cpus_per_env_runner, "env runners", "rl.cpus_per_env_runner"),
             (rl.evaluation_runners, rl.cpus_per_env_runner, "evaluation runners", "rl.cpus_per_env_runner"),
             (rl.learners, rl.cpus_per_learner, "learners", "rl.cpus_per_learner")]
    parts = [p for p in parts if p[0]]
    own = spec.resources.cpus_per_worker if in_tune else 0.0
    needed = own + sum(n * c for n, c, _, _ in parts)
    if parts and needed > cpus + 1e-9:
        terms = [f"{n} {what} x {c:g}" for n, c, what, _ in parts] + ([f"the trial's {own:g}"] if own else [])
        fields = " / ".join(dict.fromkeys(f for *_, f in parts))
        problems.append(f"rl: {' + '.join(terms)} CPUs is {needed:g}, more than the {cpus:g} CPUs here (the run would "
                        f"wait forever for them); lower the counts or {fields} (fractions share a core: 0.25)")
    return problems



# --------------------------------------------------------------------------------------------- a cluster's nodes


@dataclass(frozen=True)
class NodeType:
    """A node type of a cluster file, as its autoscaler sees it."""

    name: str
    resources: dict[str, float]
    """What one node offers (CPU, GPU, memory in bytes, ...), as declared; {} when Ray detects it at start."""
    max_nodes: int
    """How many of them there can be (the head: one)."""
    head: bool = False

    def short(self, bundle: dict[str, float]) -> list[str]:
        """The resources of ``bundle`` this node type does not offer enough of (memory only where it is given)."""
        return [k for k, v in bundle.items() if (k != "memory" or k in self.resources)
                and v > self.resources.get(k, 0) + 1e-9]

    def how_many(self, bundle: dict[str, float]) -> int:
        """Bundles like this one a node holds."""
        return int(min(self.resources.get(k, 0) / v + 1e-9 for k, v in bundle.items()
                       if v and (k != "memory" or k in self.resources)) if bundle else 1)


@dataclass(frozen=True)
class Cluster:
    path: str
    types: list[NodeType]
    max_workers: int
    """Worker nodes at most, all types together."""

    @property
    def declared(self) -> bool:
        """Whether the worker types say what they offer (on-prem machines' resources are found when they join)."""
        return any(t.resources for t in self.types if not t.head)

    def capacity(self) -> str:
        workers = ", ".join(f"up to {t.max_nodes} x {t.name} {_fmt(t.resources)}" for t in self.types if not t.head)
        head = next(t for t in self.types if t.head)
        return f"{workers}; {self.max_workers} workers in all; the head ({head.name}) offers {_fmt(head.resources)}"


def read_cluster(path: str | Path) -> Cluster:
    """A cluster-launcher YAML or KubeRay manifest's node types, read with Ray's own code (``ray_compat``)."""
    from genlab import ray_compat

    cfg = ray_compat.cluster_config(path)
    head = cfg["head_node_type"]
    total = int(cfg.get("max_workers", 0))
    types = [NodeType(name, {k: float(v) for k, v in (t.get("resources") or {}).items() if k != "object_store_memory"},
                      1 if name == head else min(int(t.get("max_workers", total)), total), name == head)
             for name, t in cfg["available_node_types"].items()]
    return Cluster(str(path), types, total)


def _fmt(resources: dict[str, float]) -> str:
    def one(k, v):
        return f"{k} {v / 1024**3:g} GiB" if k == "memory" else f"{k} {v:g}"

    return "{" + ", ".join(one(k, v) for k, v in resources.items()) + "}"


def _runs_of(spec) -> list[tuple[str, RunSpec]]:
    """The run specs whose trials a spec starts, each with where it comes from: a run; a sweep's base run and its run
    at both ends of every range and every choice; a study's arms."""
    from genlab.studies import StudySpec

    if isinstance(spec, RunSpec):
        return [("run", spec)]
    if isinstance(spec, SweepSpec):
        return [("run", spec.run)] + [(f"search_space.{path} = {value!r}", RunSpec.model_validate(raw))
                                      for path, dim in spec.search_space.items()
                                      for value, raw in probes(path, dim, spec.run)]
    if isinstance(spec, StudySpec):
        return [(f"arm {arm.label!r}", arm.run) for arm in spec.arms]
    return []


def cluster_report(spec, cluster: Cluster, *, source: str) -> list[str]:
    """Whether every trial ``spec`` starts fits the cluster's node types: each of its bundles (a generative run's Ray
    Train workers, an RL trial's placement group: RLlib's own request) on some node type, and all of them on the
    cluster at its largest. Returns the report's lines (which node types, how many per node, how the trial packs);
    raises :class:`SpecError` naming the field and the largest node type when a trial cannot fit."""
    from genlab.runners.trials import trial_needs

    runs = _runs_of(spec)
    if not runs:
        return [f"{source}: an expert spec trains on the driver (genlab expert); nothing to place on {cluster.path}"]
    lines = [f"{source} on {cluster.path}: {cluster.capacity()}"]
    if not cluster.declared:
        return lines + [f"  {cluster.path}'s worker nodes declare no resources (Ray finds each machine's CPUs and GPUs "
                        "when it joins), so nothing can be checked offline; see `ray status` once it is up"]
    problems: list[str] = []
    seen: dict[tuple, list[str]] = {}
    for where, run in runs:
        needs = trial_needs(run)
        key = tuple((b.count, tuple(sorted(b.resources.items())), b.what) for b in needs.bundles)
        seen.setdefault(key, []).append(where)
        if len(seen[key]) > 1:
            continue
        out, wrong = _fit(needs, cluster)
        prefix = "" if where == "run" else f"{where}: "
        lines += [f"  {prefix}{line}" for line in out]
        problems += [f"{'' if where == 'run' else f'{where}: '}{p}" for p in wrong]
    if problems:
        raise SpecError(f"{source} does not fit {cluster.path}:\n" + "\n".join(f"  {p}" for p in problems))
    return lines


def _fit(needs, cluster: Cluster) -> tuple[list[str], list[str]]:
    total = sum(b.count for b in needs.bundles)
    lines = [f"a trial holds {total} bundle{'s' * (total > 1)} ({needs.holder}, {needs.strategy}): " + " + ".join(
        f"{b.count} x {_fmt(b.resources)} {b.what}" for b in needs.bundles)]
    problems = []
    for b in needs.bundles:
        fits = [t for t in cluster.types if not t.short(b.resources) and t.how_many(b.resources) >= 1]
        if fits:
            lines.append(f"  {b.what} {_fmt(b.resources)}: fits " + ", ".join(
                f"{t.name} ({t.how_many(b.resources)} per node)" for t in fits))
            continue
        order = {"GPU": 0, "CPU": 1, "memory": 2}
        alone = sorted((k for k in b.resources if all(k in t.short(b.resources) for t in cluster.types)),
                       key=lambda k: order.get(k, 3))
        if alone:  # no node type has that much of one resource
            worst = alone[0]
            largest = max(cluster.types, key=lambda t: (t.resources.get(worst, 0), t.resources.get("CPU", 0)))
            field, what = b.fields.get(worst, worst), f"more {worst} than any node type of {cluster.path} has"
        else:  # each resource fits some node type, but none has all of them
            largest = max(cluster.types, key=lambda t: (t.resources.get("GPU", 0), t.resources.get("CPU", 0)))
            field = " / ".join(dict.fromkeys(v for k, v in b.fields.items() if k in b.resources))
            what = f"and no node type of {cluster.path} has all of it at once"
        subject = b.what if b.what.startswith("the ") else f"each {b.what}"
        problems.append(f"{field}: {subject} needs {_fmt(b.resources)}, {what}; the largest, {largest.name}, "
                        f"has {_fmt(largest.resources)}")
    if problems:
        return lines, problems
    packed = _pack([dict(b.resources) for b in needs.bundles for _ in range(b.count)], cluster)
    if packed is None:
        counted = [b for b in needs.bundles if "#" in b.fields]
        field = " / ".join(b.fields["#"] for b in (counted or needs.bundles[:1]))
        need = {k: sum(b.count * b.resources.get(k, 0) for b in needs.bundles) for k in ("CPU", "GPU")}
        problems.append(f"{field}: a trial's {total} bundles need {_fmt({k: v for k, v in need.items() if v})} in all, "
                        f"more than {cluster.path} holds at its largest ({cluster.capacity()}); lower {field}")
        return lines, problems
    used = {}
    for name in packed:
        used[name] = used.get(name, 0) + 1
    lines.append("  all of it: " + " + ".join(f"{n} x {name}" for name, n in used.items())
                 + (" (one node)" if len(packed) == 1 else " (PACK spreads it over these)"))
    return lines, problems


def _pack(bundles: list[dict[str, float]], cluster: Cluster) -> list[str] | None:
    """Node types of the nodes ``bundles`` pack onto (first fit, largest bundles first; a new node of the type that
    holds the most of what is left, the smaller on a tie), or None when the cluster at its largest cannot hold them:
    one node of the smallest type that holds them all when there is one."""

    def size(resources):
        return tuple(resources.get(k, 0) for k in ("GPU", "CPU", "memory"))

    bundles = sorted(bundles, key=size, reverse=True)
    for t in sorted(cluster.types, key=lambda t: size(t.resources)):
        if _fill(bundles, [t], max_workers=1, max_nodes=1) is not None:
            return [t.name]
    return _fill(bundles, cluster.types, max_workers=cluster.max_workers)


def _fill(bundles: list[dict[str, float]], types: list[NodeType], *, max_workers: int,
          max_nodes: float = float("inf")) -> list[str] | None:
    nodes: list[tuple[NodeType, dict[str, float]]] = []

    def put(free: dict, bundle: dict) -> bool:
        if any(v > free.get(k, 0) + 1e-9 for k, v in bundle.items() if k != "memory" or k in free):
            return False
        for k, v in bundle.items():
            if k in free:
                free[k] -= v
        return True

    for i, bundle in enumerate(bundles):
        if any(put(free, bundle) for _, free in nodes):
            continue
        opened = {t.name: sum(n.name == t.name for n, _ in nodes) for t in types}
        workers = sum(not n.head for n, _ in nodes)
        candidates = [t for t in types if not t.short(bundle) and opened[t.name] < t.max_nodes
                      and (t.head or workers < max_workers) and len(nodes) < max_nodes]
        if not candidates:
            return None

        def holds(t: NodeType, rest=bundles[i:]) -> int:
            free, n = dict(t.resources), 0
            for b in rest:
                n += put(free, b)
            return n

        best = max(candidates, key=lambda t: (holds(t), [-x for x in (t.resources.get("GPU", 0),
                                                                      t.resources.get("CPU", 0))]))
        free = dict(best.resources)
        put(free, bundle)
        nodes.append((best, free))
    return [n.name for n, _ in nodes]
