"""Benchmark: the IAF-VAE training step inside a Ray Train worker vs a plain PyTorch loop of the same model.

Same spec (model, data, batch size), same number of steps and threads, measured side by side in one run and
alternated ``--repeats`` times; only the step loop is timed in both (batches are built before the clock starts,
Ray Train's worker start-up is reported separately). The ratio of images/s is the per-step cost of running
inside a Ray Train worker. On a shared machine wall-clock rates swing with the load, so the script also reports
images per CPU-second of the training process (``time.process_time``: every thread of that process, Ray's own
threads in the worker included), which the other jobs on the machine disturb much less.

    .venv/bin/python tests/benchmarks/bench_iaf_vae_step.py [--spec sweeps/iaf_vae/digits.yaml] [--steps 300]
    .venv/bin/python tests/benchmarks/bench_iaf_vae_step.py --spec sweeps/iaf_vae/mnist_d2w320.yaml --device cuda
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


def time_steps(spec_dict: dict, steps: int, threads: int, device: str) -> dict:
    """Build data and the algorithm from the spec; time ``steps`` training steps after 5 warm-up steps."""
    torch.set_num_threads(threads)
    spec = config.run_from_dict(spec_dict)
    ds = data.load(spec.data)
    torch.manual_seed(spec.seed)
    algo = registry.algorithm_class(spec.algorithm)(spec.hparams_obj(), ds.info, device)
    labels = registry.uses_labels(spec.algorithm)
    stream = _endless(ds, spec, device, labels)
    algo.initialize(next(stream))
    for _ in range(5):
        algo.train_step(next(stream))
    batches = [next(stream) for _ in range(steps)]
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for b in batches:
        algo.train_step(b)
    _sync(device)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    images = steps * spec.data.batch_size
    return {"steps": steps, "seconds": dt, "images_per_s": images / dt, "images_per_cpu_s": images / cpu}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _endless(ds, spec, device, labels):
    epoch = 0
    while True:
        yield from data.batches(ds, batch_size=spec.data.batch_size, epoch=epoch, seed=spec.seed, device=device,
                                labels=labels)
        epoch += 1


def in_ray_train(spec_dict: dict, steps: int, threads: int, device: str) -> tuple[dict, float]:
    import ray.train
    from ray.train.torch import TorchTrainer

    def loop(cfg):
        timing = time_steps(cfg["spec"], cfg["steps"], cfg["threads"], cfg["device"])
        Path(cfg["out"]).write_text(json.dumps(timing))

    use_gpu = device.startswith("cuda")
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "timing.json"  # a local cluster shares this file system with its worker
        t0 = time.perf_counter()
        TorchTrainer(
            loop, train_loop_config={"spec": spec_dict, "steps": steps, "threads": threads, "out": str(out),
                                     "device": device},
            scaling_config=ray.train.ScalingConfig(num_workers=1, use_gpu=use_gpu,
                                                   resources_per_worker={"CPU": threads, **({"GPU": 1} if use_gpu
                                                                                            else {})}),
            run_config=ray.train.RunConfig(name="bench_iaf_vae", storage_path=d),
        ).fit()
        return json.loads(out.read_text()), time.perf_counter() - t0


def main() -> None:
    import ray

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default=str(ROOT / "sweeps/iaf_vae/digits.yaml"))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2, help="alternate plain / Ray Train this many times")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args()
    spec = config.load_run(args.spec).model_dump(mode="json")

    ray.init(address="local", num_cpus=max(2, args.threads), include_dashboard=False,
             runtime_env={"env_vars": genlab.RAY_ENV_VARS})
    try:
        plain, in_ray = [], []
        for i in range(args.repeats):
            plain.append(time_steps(spec, args.steps, args.threads, args.device))
            timing, wall = in_ray_train(spec, args.steps, args.threads, args.device)
            in_ray.append(timing)
            print(f"round {i + 1}: plain {plain[-1]['images_per_s']:.0f} images/s "
                  f"({plain[-1]['images_per_cpu_s']:.0f} per CPU-s), Ray Train worker {timing['images_per_s']:.0f} "
                  f"images/s ({timing['images_per_cpu_s']:.0f} per CPU-s); TorchTrainer.fit wall {wall:.1f} s "
                  "incl. start-up", flush=True)
    finally:
        ray.shutdown()
    print(f"\nspec {Path(args.spec).name}, {args.steps} steps, batch {spec['data']['batch_size']}, "
          f"{args.threads} thread(s), {args.device}; best of {args.repeats}:")
    for key, unit in (("images_per_s", "images/s (wall)"), ("images_per_cpu_s", "images per CPU-second")):
        best_plain, best_ray = max(r[key] for r in plain), max(r[key] for r in in_ray)
        print(f"  {unit}: plain PyTorch loop {best_plain:.0f}, Ray Train worker {best_ray:.0f}, "
              f"ratio Ray/plain {best_ray / best_plain:.3f}  (1.0 = no per-step overhead)")


if __name__ == "__main__":
    main()
