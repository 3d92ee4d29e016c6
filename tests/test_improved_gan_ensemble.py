"""The ensemble row: N checkpoints' averaged classifiers, softmax averaged, against a hand computation; the script
finds the latest checkpoint of each run folder of a sweep, as the runner writes them."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import yaml
from conftest import ROOT

from algorithms.improved_gan.algorithm import ImprovedGAN
from algorithms.improved_gan.ensemble import ensemble_probabilities, ensemble_test_error, load_classifier
from genlab import config, data
from genlab.specs import RunSpec

RUN = {"name": "ens", "algorithm": "improved_gan",
       "hparams": {"arch": "mlp", "d_hidden": [32, 16], "g_hidden": [32], "z_dim": 8, "ema_decay": 0.5},
       "data": {"name": "digits", "labels_per_class": 10, "batch_size": 50, "seed": 0},
       "budget": {"epochs": 1}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small nets: one thread is fastest


def _script():
    path = ROOT / "scripts" / "improved_gan_ensemble.py"
    spec = importlib.util.spec_from_file_location("improved_gan_ensemble", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train(spec: RunSpec, ds, seed: int, steps: int) -> ImprovedGAN:
    torch.manual_seed(seed)
    algo = ImprovedGAN(spec.hparams_obj(), ds.info)
    batches = data.batches(ds, batch_size=50, epoch=1, seed=seed, steps=steps + 1)
    algo.initialize(next(batches))
    for batch in batches:
        algo.train_step(batch)
    return algo


def test_ensemble_of_checkpoints_by_hand_and_by_the_script(tmp_path, capsys):
    spec_file = tmp_path / "run.yaml"
    spec_file.write_text(yaml.safe_dump(RUN))
    spec = config.load_run(spec_file)
    ds = data.load(spec.data)
    train = tmp_path / "sweep" / "train"
    members = []
    for seed in range(3):
        run_dir = train / f"trial{seed}"
        old = _train(spec, ds, seed, steps=1)  # an older checkpoint of the same run: not the one to use
        algo = _train(spec, ds, seed, steps=4)
        for epoch, a in ((1, old), (2, algo)):
            (run_dir / f"checkpoint_{epoch}").mkdir(parents=True)
            torch.save({"algo": a.state_dict(), "epoch": epoch}, run_dir / f"checkpoint_{epoch}" / "state.pt")
        members.append(algo)

    nets = [load_classifier(train / f"trial{s}" / "checkpoint_2" / "state.pt", spec.hparams_obj(), ds.info)
            for s in range(3)]
    test_x, test_y = data.test_set(ds)
    with torch.no_grad():
        probs = torch.stack([a.ema.average.eval()(test_x)[0].softmax(1) for a in members]).mean(0)
    torch.testing.assert_close(ensemble_probabilities(nets, test_x), probs)
    result = ensemble_test_error(nets, test_x, test_y)
    expected_wrong = (probs.argmax(1) != test_y).sum().item()
    assert result["ensemble_errors"] == expected_wrong
    assert result["member_errors"] == [a.evaluate(test_x, test_y)["eval/test_error"] for a in members]

    out = _script().main([str(spec_file), str(train)])
    assert out["ensemble_errors"] == expected_wrong and len(out["member_errors"]) == 3
    printed = capsys.readouterr().out
    assert "checkpoint_2" in printed and "checkpoint_1" not in printed and "softmax averaged over 3 models" in printed
