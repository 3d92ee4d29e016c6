"""Benchmark P1: a generative spec's training step inside a Ray Train worker vs a plain PyTorch loop.

Same model, data, batch size, steps and thread count, measured side by side in one run. Only the
step loop is timed in both (Ray Train's worker start-up is reported separately), so the ratio is
the per-step overhead of running inside a Ray Train worker. Images/s counts the unlabeled batch
(``data.batch_size`` images per step), as the runner's ``perf/images_per_s`` does.

    .venv/bin/python tests/benchmarks/bench_train_step.py [--spec sweeps/improved_gan/digits.yaml] [--steps 300]
    .venv/bin/python tests/benchmarks/bench_train_step.py --spec sweeps/improved_gan/mnist5k.yaml --steps 200
    .venv/bin/python tests/benchmarks/bench_train_step.py --spec sweeps/infogan/mnist5k.yaml --steps 40
    .venv/bin/python tests/benchmarks/bench_train_step.py --spec sweeps/iaf_vae/mnist5k.yaml --steps 40
    .venv/bin/python tests/benchmarks/bench_train_step.py --ray-defaults   # report latency with Ray's defaults
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

import genlab
from genlab import config, data, registry

ROOT = Path(__file__).resolve().parents[2]
REPORTS = 5


def time_steps(spec_dict: dict, steps: int, threads: int) -> dict:
    """Build data + algorithm from the spec and time ``steps`` training steps (after 5 warm-up steps)."""
    torch.set_num_threads(threads)
    spec = config.run_from_dict(spec_dict)
    ds = data.load(spec.data)
    torch.manual_seed(spec.seed)
    algo = registry.algorithm_class(spec.algorithm)(spec.hparams_obj(), ds.info, "cpu")
    stream = _endless(ds, spec)
    algo.initialize(next(stream))
    for _ in range(5):
        algo.train_step(next(stream))
    batches = [next(stream) for _ in range(steps)]  # batching is outside the timed loop in both cases
    t0 = time.perf_counter()
    for b in batches:
        algo.train_step(b)
    dt = time.perf_counter() - t0
    return {"steps": steps, "seconds": dt, "steps_per_s": steps / dt,
            "images_per_s": steps * spec.data.batch_size / dt}


def _endless(ds, spec):
    labels = registry.uses_labels(spec.algorithm)  # the batches the runner hands this method (no labeled half)
    epoch = 0
    while True:
        yield from data.batches(ds, batch_size=spec.data.batch_size, epoch=epoch, seed=spec.seed, labels=labels)
        epoch += 1


def in_ray_train(spec_dict: dict, steps: int, threads: int) -> tuple[dict, float]:
    import ray.train
    from ray.train.torch import TorchTrainer

    def loop(cfg):
        timing = time_steps(cfg["spec"], cfg["steps"], cfg["threads"])
        ray.train.report({})  # the first report returns at once; time the next ones (one per epoch)
        t0 = time.perf_counter()
        for _ in range(REPORTS):
            ray.train.report({})
        timing["report_s"] = (time.perf_counter() - t0) / REPORTS
        Path(cfg["out"]).write_text(json.dumps(timing))

    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "timing.json"  # a local cluster shares this file system with its worker
        t0 = time.perf_counter()
        TorchTrainer(
            loop, train_loop_config={"spec": spec_dict, "steps": steps, "threads": threads, "out": str(out)},
            scaling_config=ray.train.ScalingConfig(num_workers=1, resources_per_worker={"CPU": threads}),
            run_config=ray.train.RunConfig(name="bench_p1", storage_path=d),
        ).fit()
        return json.loads(out.read_text()), time.perf_counter() - t0


def main() -> None:
    import ray

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default=str(ROOT / "sweeps/improved_gan/digits.yaml"))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2, help="alternate plain/Ray this many times")
    p.add_argument("--ray-defaults", action="store_true",
                   help="run Ray Train with its default settings instead of genlab's RAY_ENV_VARS")
    args = p.parse_args()
    spec = config.load_run(args.spec).model_dump(mode="json")

    p_env = {"env_vars": {} if args.ray_defaults else genlab.RAY_ENV_VARS}
    ray.init(address="local", num_cpus=max(2, args.threads), include_dashboard=False, runtime_env=p_env)
    try:
        plain, ray_runs = [], []
        for i in range(args.repeats):
            plain.append(time_steps(spec, args.steps, args.threads))
            metrics, wall = in_ray_train(spec, args.steps, args.threads)
            ray_runs.append(metrics)
            print(f"round {i + 1}: plain {plain[-1]['images_per_s']:.0f} images/s, "
                  f"Ray Train worker {metrics['images_per_s']:.0f} images/s, "
                  f"ray.train.report {metrics['report_s']:.3f} s "
                  f"(TorchTrainer.fit wall {wall:.1f} s incl. start-up)", flush=True)
    finally:
        ray.shutdown()
    best_plain = max(r["images_per_s"] for r in plain)
    best_ray = max(r["images_per_s"] for r in ray_runs)
    batch = spec["data"]["batch_size"]
    print(f"\nspec {Path(args.spec).name} (seed {spec['seed']}), {args.steps} steps, batch {batch}, "
          f"{args.threads} thread(s); best of {args.repeats}:")
    print(f"  plain PyTorch loop : {best_plain:8.1f} images/s ({best_plain / batch:.2f} steps/s)")
    print(f"  Ray Train worker   : {best_ray:8.1f} images/s ({best_ray / batch:.2f} steps/s)")
    print(f"  ratio Ray/plain    : {best_ray / best_plain:8.3f}  (1.0 = no per-step overhead)")
    report = min(r["report_s"] for r in ray_runs)
    print(f"  ray.train.report   : {report:8.3f} s per call (once per epoch; "
          f"{'Ray defaults' if args.ray_defaults else 'genlab RAY_ENV_VARS'})")


if __name__ == "__main__":
    main()
