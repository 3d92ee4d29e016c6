"""Benchmark: the size of a generative run's checkpoint (``state.pt``) for run specs, without their data.

Each spec's algorithm is built as a Ray Train worker builds it (``registry.algorithm_class(...)(hparams, data info,
"cpu")``), initialized on a random batch of the dataset's shape (``--batch`` images; a checkpoint's size does not
depend on the batch size) and trained ``--steps`` steps, so that its optimizers hold their moments; then its state is
saved as the runner saves a checkpoint (``{"algo": state_dict, "epoch", "history", "last_eval"}``, ``torch.save``)
and measured. A real checkpoint's history adds a few kB per epoch. Reported: tensor elements by top-level entry
of the algorithm's state (nets, optimizers, EMA), state.pt bytes, seconds per step (CPU, 1 thread).

    OMP_NUM_THREADS=1 .venv/bin/python tests/benchmarks/bench_checkpoint_size.py \\
        sweeps/improved_gan/digits.yaml sweeps/improved_gan/cifar10.yaml sweeps/iaf_vae/cifar10.yaml
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from genlab import config, data, registry

ROOT = Path(__file__).resolve().parents[2]


def random_batch(info, n: int, labels: bool) -> dict[str, torch.Tensor]:
    x = torch.rand(n, *info.shape) * 2 - 1
    if not labels:
        return {"x": x}
    classes = max(1, info.num_classes)
    return {"x": x, "x_lab": torch.rand(n, *info.shape) * 2 - 1, "y_lab": torch.randint(0, classes, (n,))}


def measure(path: str, batch: int, steps: int) -> dict:
    spec = config.load_run(ROOT / path)
    info = data.info(spec.data)
    torch.manual_seed(0)
    algo = registry.algorithm_class(spec.algorithm)(spec.hparams_obj(), info, "cpu")
    labels = registry.uses_labels(spec.algorithm)
    algo.initialize(random_batch(info, batch, labels))
    t0 = time.perf_counter()
    for _ in range(steps):
        algo.train_step(random_batch(info, batch, labels))
    dt = time.perf_counter() - t0
    state = {"algo": algo.state_dict(), "epoch": 1, "history": [], "last_eval": {}}
    params = sum(t.numel() for t in _tensors(state["algo"]))
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "state.pt"
        torch.save(state, f)
        size = f.stat().st_size
    parts = {k: sum(t.numel() for t in _tensors(v)) for k, v in state["algo"].items()}
    return {"spec": path, "algorithm": spec.algorithm, "data": spec.data.name, "parts": parts,
            "tensor_elements": params, "bytes": size, "step_s": dt / max(1, steps)}


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("specs", nargs="+", help="run specs (YAML), relative to the repository")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(1)
    print("| spec | algorithm | data | tensor elements by part of the state | in all | state.pt | s per step |")
    print("|---|---|---|---|---|---|---|")
    for path in args.specs:
        r = measure(path, args.batch, args.steps)
        nets = ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in r["parts"].items() if v) or "-"
        print(f"| {r['spec']} | {r['algorithm']} | {r['data']} | {nets} | {r['tensor_elements'] / 1e6:.2f}M "
              f"| {r['bytes'] / 1e6:.1f} MB | {r['step_s']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
