"""Benchmark: a generative spec's training step with the fast path (the run spec's ``perf:``), side by side in one run.

fp32 (today's default), bf16 autocast, bf16 + torch.compile, and, when the method's nets have conv weights, each of
them with channels_last too: every variant is the spec's algorithm built from the same seed, initialised on the same
batch and wrapped by ``genlab.fastpath.apply`` exactly as a Ray Train worker does. Each variant first runs
``--warmup`` steps (torch.compile compiles there; its time is reported apart), then the variants take turns on the
same pre-made batches for ``--repeats`` rounds of ``--steps`` steps, so that a busy machine's slow spells fall on all
of them. Images/s counts ``data.batch_size`` images per step, as the runner's ``perf/images_per_s`` does; the table
shows each variant's best round and its ratio to fp32's best.

    OMP_NUM_THREADS=1 .venv/bin/python tests/benchmarks/bench_fast_path.py --spec sweeps/improved_gan/digits.yaml
    OMP_NUM_THREADS=1 .venv/bin/python tests/benchmarks/bench_fast_path.py --spec sweeps/infogan/digits.yaml \\
        --set hparams.arch=mnist                                       # conv nets: channels_last too
    .venv/bin/python tests/benchmarks/bench_fast_path.py --spec sweeps/improved_gan/cifar10.yaml --device cuda \\
        --set budget.steps_per_epoch=50                                # the GPU the fast path is for (goal: >= 1.5x)
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from genlab import config, data, fastpath, registry

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = {
    "fp32": {},
    "bf16": {"precision": "bf16"},
    "bf16+compile": {"precision": "bf16", "compile": True},
    "fp32+compile": {"compile": True},
    "fp32+channels_last": {"channels_last": True},
    "bf16+channels_last": {"precision": "bf16", "channels_last": True},
    "bf16+compile+channels_last": {"precision": "bf16", "compile": True, "channels_last": True},
}


def _stream(ds, spec, device):
    epoch = 0
    while True:
        yield from data.batches(ds, batch_size=spec.data.batch_size, epoch=epoch, seed=spec.seed, device=device,
                                labels=registry.uses_labels(spec.algorithm))
        epoch += 1


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(spec_path: str, overrides: list[str], perf: dict, device: torch.device, ds, first_batch):
    """The spec's algorithm with ``perf`` applied, as a Ray Train worker builds it (same seed, same first batch)."""
    spec = config.load_run(spec_path, overrides + [f"perf.{k}={str(v).lower()}" for k, v in perf.items()])
    torch.manual_seed(spec.seed)
    algo = registry.algorithm_class(spec.algorithm)(spec.hparams_obj(), ds.info, device)
    algo.initialize(first_batch)
    fastpath.apply(algo, spec.perf, device)
    return algo


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default=str(ROOT / "sweeps/improved_gan/digits.yaml"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="run spec overrides")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=30, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens here)")
    p.add_argument("--repeats", type=int, default=3, help="rounds, the variants taking turns")
    p.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None,
                   help="default: all but fp32+compile (for conv nets; else those without channels_last)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    spec = config.load_run(args.spec, args.set)
    ds = data.load(spec.data)
    stream = _stream(ds, spec, device)
    first = next(stream)
    probe = build(args.spec, args.set, {}, device, ds, first)
    conv = [name for name, net in probe.nets.items() if fastpath.has_conv_weights(net)]
    names = args.variants or [v for v in VARIANTS if v != "fp32+compile" and (conv or "channels_last" not in v)]
    problems = {n: fastpath.device_problems(config.load_run(args.spec, args.set + [
        f"perf.{k}={str(v).lower()}" for k, v in VARIANTS[n].items()]).perf, device) for n in names}
    for n in [n for n in names if problems[n]]:
        print(f"skipped {n}: {'; '.join(problems[n])}")
        names.remove(n)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} torch thread(s)"
    print(f"{spec.algorithm} ({args.spec}{' ' + ' '.join(args.set) if args.set else ''}), batch "
          f"{spec.data.batch_size}, on {where}; conv nets: {', '.join(conv) or 'none'}")

    algos, warm = {}, {}
    for n in names:
        algos[n] = build(args.spec, args.set, VARIANTS[n], device, ds, first)
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            algos[n].train_step(next(stream))
        _sync(device)
        warm[n] = time.perf_counter() - t0
        print(f"  {n}: {args.warmup} warm-up steps in {warm[n]:.1f} s")

    rates: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.repeats):
        batches = [next(stream) for _ in range(args.steps)]  # the same batches for every variant of the round
        for n in names:
            _sync(device)
            t0 = time.perf_counter()
            for b in batches:
                algos[n].train_step(b)
            _sync(device)
            rates[n].append(args.steps * spec.data.batch_size / (time.perf_counter() - t0))
        print(f"round {r + 1}: " + ", ".join(f"{n} {rates[n][-1]:.0f}" for n in names) + " images/s")

    base = max(rates["fp32"]) if "fp32" in rates else None
    print(f"\n| variant | images/s (best of {args.repeats}) | median | vs fp32 | warm-up ({args.warmup} steps) |")
    print("|---|---|---|---|---|")
    for n in names:
        ratio = f"{max(rates[n]) / base:.2f}x" if base else "-"
        print(f"| {n} | {max(rates[n]):.0f} | {statistics.median(rates[n]):.0f} | {ratio} | {warm[n]:.1f} s |")


if __name__ == "__main__":
    main()
