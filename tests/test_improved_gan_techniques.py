"""Improved-GAN's techniques for sample quality, each against a hand or loop reference: minibatch discrimination,
minibatch standard deviation, virtual batch norm, historical averaging, one-sided label smoothing, label noise, the
generator's adversarial losses; and the switches that turn them on in the algorithm and the spec."""

from __future__ import annotations

import io
import statistics

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, side_by_side, sqlite_store, train_like_the_runner
from pydantic import ValidationError

from algorithms.common.gan import (
    HistoricalAverage,
    MinibatchDiscrimination,
    VirtualBatchNorm,
    minibatch_features,
    minibatch_stddev,
)
from algorithms.common.layers import data_dependent_init
from algorithms.improved_gan import objective
from algorithms.improved_gan.algorithm import ImprovedGAN
from algorithms.improved_gan.hparams import ABLATIONS, ImprovedGANHparams
from algorithms.improved_gan.nets import ConvGenerator, MLPDiscriminator, MLPGenerator
from genlab import config, registry
from genlab.context import DataContext
from genlab.errors import SpecError
from genlab.specs import RunSpec, set_path

K = 10
SPECS = ROOT / "sweeps" / "improved_gan"


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small nets: one thread is fastest


# ------------------------------------------------------------------------------ minibatch discrimination


def test_minibatch_features_against_a_loop():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(6, 4, 3, generator=g, dtype=torch.float64)  # N=6 examples, B=4 kernels, C=3 dims
    expected = torch.zeros(6, 4, dtype=torch.float64)
    for i in range(6):
        for b in range(4):
            expected[i, b] = sum(torch.exp(-(m[i, b] - m[j, b]).abs().sum()) for j in range(6) if j != i)
    torch.testing.assert_close(minibatch_features(m), expected)


@pytest.mark.parametrize("kernels, dim", [(100, 5), (300, 50)], ids=["100x5", "300x50"])
def test_minibatch_discrimination_layer(kernels, dim):
    """[f, o + b] with M = f T; T normalised over its input axis; each group is a minibatch of its own."""
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(8, kernels, dim).double()
    f = torch.randn(10, 8, dtype=torch.float64)
    t = layer.tensor()
    torch.testing.assert_close(t.norm(dim=0), layer.log_scale.exp())  # ||T[:, b, c]|| = exp(log_scale[b, c])
    m = torch.einsum("na,abc->nbc", f, t)
    out = layer(f)
    assert out.shape == (10, 8 + kernels)
    torch.testing.assert_close(out[:, :8], f)
    torch.testing.assert_close(out[:, 8:], minibatch_features(m) + layer.b)
    grouped = layer(f, groups=[4, 6])
    torch.testing.assert_close(grouped[:4, 8:], minibatch_features(m[:4]) + layer.b)
    torch.testing.assert_close(grouped[4:, 8:], minibatch_features(m[4:]) + layer.b)
    out.sum().backward()
    assert layer.theta.grad is not None and layer.theta.grad.abs().sum() > 0


def test_minibatch_discrimination_data_dependent_init():
    """After the init every kernel's nearest-neighbour L1 distance is 2 on average and o + b has mean 0."""
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(8, 20, 5).double()
    f = torch.randn(50, 8, dtype=torch.float64) * 3
    data_dependent_init(layer, f)
    m = torch.einsum("na,abc->nbc", f, layer.tensor())
    dist = (m[:, None] - m[None]).abs().sum(-1) + torch.diag(torch.full((50,), float("inf"))).unsqueeze(-1)
    torch.testing.assert_close(dist.min(dim=1).values.mean(dim=0), torch.full((20,), 2.0, dtype=torch.float64))
    torch.testing.assert_close(layer(f)[:, 8:].mean(dim=0), torch.zeros(20, dtype=torch.float64))


def test_minibatch_stddev_by_hand():
    f = torch.tensor([[0.0, 1.0], [2.0, 5.0]])  # per-feature population std: 1, 2 -> mean 1.5
    torch.testing.assert_close(minibatch_stddev(f), torch.full((2, 1), 1.5), atol=1e-6, rtol=0)


def test_discriminator_features_are_per_group():
    """With minibatch features on, D's output for a sub-batch depends on that sub-batch only."""
    torch.manual_seed(0)
    d = MLPDiscriminator((1, 8, 8), [16, 12], K, 0.0, 0.0, dict(kernels=7, kernel_dim=3, stddev=True)).eval()
    assert d.head[1].v.shape[1] == 12 + 7 + 1
    a, b, c = torch.randn(3, 1, 8, 8), torch.randn(4, 1, 8, 8), torch.randn(5, 1, 8, 8)
    together = d(torch.cat([a, b]), groups=[3, 4])[0]
    with_c = d(torch.cat([a, c]), groups=[3, 5])[0]
    torch.testing.assert_close(together[:3], with_c[:3])
    torch.testing.assert_close(together[3:], d(b)[0])
    assert not torch.allclose(d(torch.cat([a, b]))[0][:3], together[:3])  # one group: the batches see each other


# ------------------------------------------------------------------------------ virtual batch norm


@pytest.mark.parametrize("shape", [(5,), (3, 4, 4)], ids=["dense", "conv"])
def test_virtual_batch_norm_by_hand(shape):
    torch.manual_seed(0)
    n_ref = 6
    vbn = VirtualBatchNorm(shape[0], n_ref).double()
    with torch.no_grad():
        vbn.weight.uniform_(0.5, 2)
        vbn.bias.uniform_(-1, 1)
    x = torch.randn(n_ref + 4, *shape, dtype=torch.float64) * 2 + 1
    y = vbn(x)
    ref = x[:n_ref]
    pos = tuple(range(2, x.dim()))
    per_channel = (0, *pos)
    gamma, beta = vbn.weight.view(-1, *[1] * len(pos)), vbn.bias.view(-1, *[1] * len(pos))
    # reference rows: the reference batch's own statistics
    mu, var = ref.mean(per_channel), ref.var(per_channel, correction=0)
    expected_ref = gamma * (ref - mu.view(-1, *[1] * len(pos))) / (var.view(-1, *[1] * len(pos)) + vbn.eps).sqrt()
    torch.testing.assert_close(y[:n_ref], expected_ref + beta)
    # any other row: the statistics of the reference batch plus that example (weight 1/(n_ref+1))
    for i in range(n_ref, len(x)):
        both = torch.cat([ref, x[i : i + 1]])
        mu, var = both.mean(per_channel), both.var(per_channel, correction=0)
        expected = gamma * (x[i] - mu.view(-1, *[1] * len(pos))) / (var.view(-1, *[1] * len(pos)) + vbn.eps).sqrt()
        torch.testing.assert_close(y[i], expected + beta)


def test_virtual_batch_norm_generator_outputs_do_not_depend_on_the_batch():
    """VBN: an example's sample is the same whatever else is in its batch (batch norm in training mode: not)."""
    torch.manual_seed(0)
    z = torch.rand(8, 6)
    for g in (MLPGenerator(6, [16], (1, 8, 8), norm="virtual_batch", n_ref=5),
              ConvGenerator(6, (8, 8, 4), (3, 16, 16), norm="virtual_batch", n_ref=5)):
        assert g.z_ref.shape == (5, 6) and "z_ref" in g.state_dict()
        torch.testing.assert_close(g(z)[:3], g(z[:3]))
        torch.testing.assert_close(g(z)[:3], g.eval()(z[:3]))  # no running statistics: the same in eval mode
    bn = MLPGenerator(6, [16], (1, 8, 8), norm="batch")
    assert "z_ref" not in bn.state_dict()
    assert not torch.allclose(bn(z)[:3], bn(z[:3]))


# ------------------------------------------------------------------------------ historical averaging


def test_historical_average_penalty_and_gradient():
    net = torch.nn.Linear(3, 2)
    ha = HistoricalAverage(net)
    seen = [[p.detach().clone() for p in net.parameters()]]
    for _ in range(4):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        expected_mean = [torch.stack(ps).mean(0) for ps in zip(*seen)]  # mean of all earlier values
        pen = ha.penalty()
        torch.testing.assert_close(pen, sum(((p - m) ** 2).sum() for p, m in zip(net.parameters(), expected_mean)))
        net.zero_grad()
        pen.backward()
        for p, m in zip(net.parameters(), expected_mean):
            torch.testing.assert_close(p.grad, 2 * (p.detach() - m))
        ha.update()
        seen.append([p.detach().clone() for p in net.parameters()])
    assert ha.count == 5
    state = ha.state_dict()
    other = HistoricalAverage(net)
    other.load_state_dict(state)
    torch.testing.assert_close(other.penalty(), ha.penalty())


# ------------------------------------------------------------------------------ D and G losses


def _log_p_fake(logits: torch.Tensor) -> torch.Tensor:
    with_fake = torch.cat([logits, torch.zeros(len(logits), 1, dtype=logits.dtype)], dim=1)
    return F.log_softmax(with_fake, dim=1)[:, -1]


def test_one_sided_label_smoothing_in_the_k_plus_1_model():
    """Real unlabeled targets alpha: -alpha log D(x) - (1 - alpha) log(1 - D(x)); fakes keep target 0."""
    g = torch.Generator().manual_seed(0)
    unl = 3 * torch.randn(7, K, generator=g, dtype=torch.float64)
    fake = 3 * torch.randn(5, K, generator=g, dtype=torch.float64)
    lab, y = torch.randn(4, K, generator=g, dtype=torch.float64), torch.tensor([0, 3, 9, 3])
    log_fake_unl, log_fake_fake = _log_p_fake(unl), _log_p_fake(fake)  # log(1 - D)
    log_d_unl = torch.log1p(-log_fake_unl.exp())  # log D = log(1 - p(K+1|x))
    alpha = 0.9
    expected = -(alpha * log_d_unl + (1 - alpha) * log_fake_unl).mean() - log_fake_fake.mean()
    total, sup, unsup = objective.discriminator_loss(lab, y, unl, fake, 0.5, real_target=alpha)
    torch.testing.assert_close(unsup, expected)
    torch.testing.assert_close(sup, F.cross_entropy(lab, y))  # the class posterior is not smoothed
    torch.testing.assert_close(total, sup + 0.5 * unsup)


def test_per_example_targets_and_no_labels():
    g = torch.Generator().manual_seed(1)
    unl, fake = torch.randn(6, K, generator=g, dtype=torch.float64), torch.randn(6, K, generator=g, dtype=torch.float64)
    t_real = torch.tensor([0.9, 0.0, 0.9, 0.9, 0.0, 0.9], dtype=torch.float64)
    t_fake = torch.tensor([0.0, 0.9, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    l_unl, l_fake = torch.logsumexp(unl, 1), torch.logsumexp(fake, 1)
    expected = (F.binary_cross_entropy_with_logits(l_unl, t_real)
                + F.binary_cross_entropy_with_logits(l_fake, t_fake))
    total, sup, unsup = objective.discriminator_loss(None, None, unl, fake, 1.0, t_real, t_fake)
    torch.testing.assert_close(unsup, expected)
    assert sup.item() == 0 and torch.equal(total, unsup)


def test_label_noise_flips_each_target_with_its_probability():
    torch.manual_seed(0)
    assert objective.real_fake_targets(5, 5, 0.9, 0.0) == (0.9, 0.0)
    real, fake = objective.real_fake_targets(20000, 20000, 0.9, 0.2)
    assert real.unique().tolist() == pytest.approx([0.0, 0.9])
    assert (real == 0).float().mean().item() == pytest.approx(0.2, abs=0.01)
    assert (fake > 0).float().mean().item() == pytest.approx(0.2, abs=0.01)


def test_generator_adversarial_losses():
    g = torch.Generator().manual_seed(2)
    fake = 2 * torch.randn(9, K, generator=g, dtype=torch.float64)
    log_one_minus_d = _log_p_fake(fake)
    d = 1 - log_one_minus_d.exp()
    torch.testing.assert_close(objective.generator_adversarial_loss(fake, "minimax"), log_one_minus_d.mean())
    torch.testing.assert_close(objective.generator_adversarial_loss(fake, "non_saturating"), -d.log().mean())


# ------------------------------------------------------------------------------ the switches in the algorithm

INFO = DataContext((1, 8, 8), K, "digits")
BASE = {"arch": "mlp", "d_hidden": [32, 16], "g_hidden": [32], "z_dim": 8, "ema_decay": 0.9}
EVERYTHING = {"minibatch_kernels": 6, "minibatch_kernel_dim": 3, "minibatch_stddev": True, "label_smoothing": 0.9,
              "label_flip": 0.1, "hist_avg_weight": 0.01, "g_norm": "virtual_batch", "vbn_reference_size": 4,
              "adversarial_loss": "non_saturating", "g_steps": 2}


def _batch(seed: int, n: int = 12) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.rand(n, 1, 8, 8, generator=g) * 2 - 1, "x_lab": torch.rand(n, 1, 8, 8, generator=g) * 2 - 1,
            "y_lab": torch.randint(0, K, (n,), generator=g)}


def _algo(seed: int = 0, **hp) -> ImprovedGAN:
    torch.manual_seed(seed)
    algo = ImprovedGAN(ImprovedGANHparams(**{**BASE, **hp}), INFO)
    algo.initialize(_batch(100))
    return algo


def test_every_switch_on_trains_reports_and_checkpoints():
    algo = _algo(**EVERYTHING)
    assert algo.nets["D"].minibatch.mbd is not None and algo.nets["D"].minibatch.std
    assert set(algo.history) == {"D", "G"}
    g_before = [p.detach().clone() for p in algo.nets["G"].parameters()]
    metrics = algo.train_step(_batch(1))
    assert set(metrics) <= set(registry.metrics("improved_gan"))
    assert {"loss/gen_fm", "loss/gen_adv", "loss/hist_avg_d", "loss/hist_avg_g"} <= set(metrics)
    assert algo.history["G"].count == 1 + EVERYTHING["g_steps"] and algo.history["D"].count == 2
    assert any(not torch.equal(a, b) for a, b in zip(g_before, algo.nets["G"].parameters()))

    buf = io.BytesIO()
    torch.save(algo.state_dict(), buf)
    buf.seek(0)
    other = _algo(seed=1, **EVERYTHING)
    other.load_state_dict(torch.load(buf, weights_only=False))
    torch.testing.assert_close(other.nets["G"].z_ref, algo.nets["G"].z_ref)
    torch.testing.assert_close(other.history["D"].penalty(), algo.history["D"].penalty())
    torch.manual_seed(6)
    step_a = algo.train_step(_batch(9))
    torch.manual_seed(6)
    assert other.train_step(_batch(9)) == step_a


def test_with_every_switch_on_the_logged_models_load_back_and_match_the_algorithm(tmp_path):
    """models(): the EMA classifier (with minibatch features) and the generator (with its virtual-batch-norm
    reference batch) through the runner's own MLflow logging, loaded back as a user would."""
    import mlflow.pytorch

    from genlab import runlog

    algo = _algo(**EVERYTHING)
    algo.train_step(_batch(1))
    models = algo.models()
    assert set(models) == {"classifier", "generator"}
    uri = sqlite_store(tmp_path / "mlflow.db")
    with runlog.run_scope(uri, "models", run_name="m", config={}, tags={}) as logger:
        for name, (module, example) in models.items():
            logger.model(name, module, example)
    mlflow.set_tracking_uri(uri)
    classifier = mlflow.pytorch.load_model(f"runs:/{logger.run_id}/classifier")
    generator = mlflow.pytorch.load_model(f"runs:/{logger.run_id}/generator")
    x, z = _batch(2)["x"], torch.rand(5, BASE["z_dim"])
    with torch.no_grad():
        torch.testing.assert_close(classifier(x), algo.ema.average.eval()(x)[0])  # the test-time classifier
        g = algo.nets["G"].eval()
        torch.testing.assert_close(generator(z), g(z))
        torch.testing.assert_close(generator(z[:2]), g(z)[:2])  # virtual batch norm: an image is its own
    torch.testing.assert_close(generator.z_ref, algo.nets["G"].z_ref)


def test_adversarial_only_generator_and_no_labels():
    algo = _algo(feature_matching=0, adversarial_loss="minimax", supervised=False)
    metrics = algo.train_step(_batch(1))
    assert "loss/sup" not in metrics and "loss/gen_fm" not in metrics and "loss/gen_adv" not in metrics
    assert metrics["loss/disc"] == pytest.approx(metrics["loss/unsup"])


def test_the_default_is_the_semi_supervised_model():
    hp = ImprovedGANHparams()
    assert (hp.minibatch_kernels, hp.minibatch_stddev, hp.label_smoothing, hp.label_flip, hp.hist_avg_weight,
            hp.g_norm, hp.adversarial_loss, hp.feature_matching, hp.g_steps, hp.supervised, hp.sample_scores) == (
        0, False, 1.0, 0.0, 0.0, "batch", "none", 1.0, 1, True, [])


FULL = {"minibatch_kernels": 100, "label_smoothing": 0.9, "g_norm": "virtual_batch", "hist_avg_weight": 0.001,
        "feature_matching": 0, "adversarial_loss": "minimax"}


@pytest.mark.parametrize("variant", list(ABLATIONS))
def test_ablation_variants_remove_one_technique(variant):
    hp = ImprovedGANHparams(**FULL, ablation=variant)
    r = hp.resolved()
    assert r.ablation is None
    assert (r.minibatch_kernels > 0) == (variant != "-MBF")
    assert (r.label_smoothing < 1) == (variant != "-LS")
    assert (r.g_norm == "virtual_batch") == (variant != "-VBN+BN")
    assert r.supervised == (variant not in ("-L", "-L+HA"))
    assert (r.hist_avg_weight > 0) == (variant == "-L+HA")
    assert ImprovedGANHparams.model_validate(hp.model_dump()) == hp  # a resolved spec validates again unchanged


def test_bad_switches_are_refused_naming_the_field():
    with pytest.raises(ValidationError, match="feature_matching"):
        ImprovedGANHparams(feature_matching=0)
    with pytest.raises(ValidationError, match="label_smoothing"):
        ImprovedGANHparams(label_smoothing=0.3)
    with pytest.raises(ValidationError, match="label_flip"):
        ImprovedGANHparams(label_flip=0.6)
    with pytest.raises(ValidationError, match="minibatch_kernels.*g_norm"):
        ImprovedGANHparams(ablation="-MBF", label_smoothing=0.9, hist_avg_weight=0.1)
    with pytest.raises(ValidationError, match="sample_scores"):
        ImprovedGANHparams(sample_scores=["classifier", "classifier"])
    with pytest.raises(ValidationError, match="score_samples: 15 samples cannot fill 10 splits"):
        ImprovedGANHparams(score_samples=15)


def test_score_cadence_must_fit_the_budget(tmp_path):
    base = config.load_run(SPECS / "digits.yaml").model_dump(mode="json")
    base["hparams"].update(sample_scores=["classifier"], score_every=7)
    with pytest.raises(SpecError, match="score_every: 7 does not divide budget.epochs"):
        config.run_from_dict(base)
    base["hparams"]["score_every"] = 20
    assert config.run_from_dict(base).hparams["score_every"] == 20
    base["hparams"]["score_every"] = 5  # eval_every is 10
    with pytest.raises(SpecError, match="multiple of budget.eval_every"):
        config.run_from_dict(base)


def test_the_ablation_and_seed_sweeps_run_every_value_once():
    from genlab.runners.sweep import grid_points

    for name in ("digits_ablation", "cifar10_ablation"):
        sweep = config.load_sweep(SPECS / f"{name}.yaml")
        points = grid_points(sweep)
        assert [p["hparams.ablation"] for p in points] == list(ABLATIONS) and sweep.num_samples == len(points)
        assert sweep.run.hparams["hist_avg_weight"] > 0 and sweep.scheduler.type == "fifo"
    for name, n_labels in (("mnist", 10), ("svhn", 100), ("cifar10", 400)):
        sweep = config.load_sweep(SPECS / f"{name}_seeds.yaml")
        seeds = [p["data.seed"] for p in grid_points(sweep)]
        assert len(set(seeds)) == len(seeds) == sweep.num_samples >= 5
        assert sweep.run.data.labels_per_class == n_labels
        paper = config.load_run(SPECS / f"{name}.yaml")
        assert sweep.run.hparams == paper.hparams and sweep.run.budget.epochs == paper.budget.epochs
    assert grid_points(config.load_sweep(SPECS / "digits_sweep.yaml")) is None  # ranges: Optuna's TPE decides


def test_the_sweeps_searcher_proposes_every_ablation_variant_once_in_order():
    """The searcher ``genlab sweep`` hands Tune, driven as Tune drives it (no Ray needed to ask it for trials)."""
    from ray.tune.search import BasicVariantGenerator

    from genlab.runners.sweep import search_algorithm

    # each trial scores better than the last: TPE would favour the first ones
    assert _proposals("digits_ablation.yaml", [], "hparams.ablation", lambda i, _: 9.0 - i) == list(ABLATIONS)
    random = config.load_sweep(SPECS / "digits_ablation.yaml", ["search=random"])
    assert isinstance(search_algorithm(random), BasicVariantGenerator)  # the baseline stays plain random sampling


def _proposals(spec: str, overrides: list[str], key: str, metric=None) -> list:
    """What the searcher ``genlab sweep`` hands Tune proposes for ``key``, trial after trial, driven as Tune drives it
    (no Ray needed): each trial completes with ``metric(i, value)`` (default: the value itself) before the next."""
    from genlab.runners.sweep import _tune_domain, search_algorithm

    sweep = config.load_sweep(SPECS / spec, overrides)
    searcher = search_algorithm(sweep)
    searcher.set_search_properties(sweep.metric, sweep.mode,
                                   {p: _tune_domain(d) for p, d in sweep.search_space.items()})
    out = []
    for i in range(sweep.num_samples):
        value = searcher.suggest(f"t{i}")[key]
        searcher.on_trial_complete(f"t{i}", {sweep.metric: value if metric is None else metric(i, value)})
        out.append(value)
    return out


def test_tpe_models_the_finished_trials_after_its_startup_trials_and_not_before():
    """``tpe_startup_trials``: TPE proposes at random until that many trials have finished (Optuna's 10 by default),
    then from its model. On the demo's space with a metric that is the unlabeled weight itself (lower is better), the
    8 proposals after 3 random ones sit lower with 3 start-up trials than with the default's random ones, sampler seed
    after sampler seed (on one seed TPE's exploration can tie)."""

    def proposals(overrides: list[str]) -> list[float]:
        return _proposals("digits_sweep.yaml", ["num_samples=11", "max_concurrent=1", *overrides],
                          "hparams.unlabeled_weight")

    lower = 0
    for seed in range(6):
        default, early = proposals([f"seed={seed}"]), proposals([f"seed={seed}", "tpe_startup_trials=3"])
        assert early[:3] == default[:3] and early[3] != default[3]  # the same random start-up, then TPE's model
        lower += statistics.mean(early[3:]) < statistics.mean(default[3:]) - 0.02
    assert lower >= 5, lower  # measured: lower by 0.03-0.21 on seeds 0-4, even on seed 5
    with pytest.raises(SpecError, match="tpe_startup_trials: 3, but search: random does not use TPE"):
        config.load_sweep(SPECS / "digits_sweep.yaml", ["search=random", "tpe_startup_trials=3"])


def test_gp_search_proposes_from_its_model_after_its_startup_trials():
    """``search: gp`` (Optuna's GPSampler): after its start-up trials, a GP of the finished trials proposes the next.
    Metric = the unlabeled weight (lower is better): GP's 8 proposals after 3 random ones sit lower than the random
    ones GP draws with its default 10 start-up trials, on every sampler seed; a choices-only space runs its grid."""
    from ray.tune.search import ConcurrencyLimiter

    from genlab.runners.sweep import search_algorithm

    def proposals(overrides: list[str]) -> list[float]:
        return _proposals("digits_sweep.yaml", ["num_samples=11", "max_concurrent=1", "search=gp", *overrides],
                          "hparams.unlabeled_weight")

    sweep = config.load_sweep(SPECS / "digits_sweep.yaml", ["search=gp"])
    assert isinstance(search_algorithm(sweep), ConcurrencyLimiter)
    for seed in range(3):
        default, early = proposals([f"seed={seed}"]), proposals([f"seed={seed}", "tpe_startup_trials=3"])
        assert early[:3] == default[:3] and early[3] != default[3]  # the same random start-up, then GP's model
        assert statistics.mean(early[3:]) < statistics.mean(default[3:]) - 0.02, (early, default)
    # a choices-only space: every ablation variant once, in order, as with TPE
    grid = _proposals("digits_ablation.yaml", ["search=gp"], "hparams.ablation", lambda i, _: 9.0 - i)
    assert grid == list(ABLATIONS)


def test_the_sample_quality_specs_are_the_papers_models():
    cifar = config.load_run(SPECS / "cifar10_samples.yaml").hparams_obj()
    assert (cifar.minibatch_kernels, cifar.minibatch_kernel_dim, cifar.g_steps, cifar.adversarial_loss,
            cifar.feature_matching, cifar.label_smoothing, cifar.g_norm, cifar.hist_avg_weight) == (
        100, 5, 3, "minimax", 0, 0.9, "virtual_batch", 0)
    assert (cifar.lr, cifar.lr_decay_start, cifar.lr_decay_epochs, cifar.conv_input_noise, cifar.input_dropout) == (
        0.0003, 800, 400, 0.2, 0)
    assert cifar.sample_scores == ["inception"] and cifar.score_samples == 50000
    mnist = config.load_run(SPECS / "mnist_samples.yaml").hparams_obj()
    assert mnist.minibatch_kernels == 100 and mnist.g_steps == 3 and mnist.sample_scores == ["classifier"]


# ------------------------------------------------------------------------------ learning: sample quality


def _with_scores(hparams, ds) -> ImprovedGAN:
    algo = ImprovedGAN(hparams, ds.info)
    algo.set_evaluation_data(lambda: (ds.to_float(ds.train_x), ds.train_y))
    return algo


def _train(spec: RunSpec) -> dict[str, float]:
    """The final evaluation after training as the runner does, in this process (sample scores on)."""
    from genlab import data

    algo, ds = train_like_the_runner(_with_scores, spec)
    return algo.evaluate(*data.test_set(ds))


SCORED = ["hparams.sample_scores=[classifier]", "hparams.score_samples=1500", "hparams.score_classifier_steps=1000",
          "budget.epochs=30", "budget.eval_every=30", "budget.checkpoint_every=30"]


def sample_quality_pair(seed: int) -> tuple[dict, dict]:
    """(full technique set, plain feature matching) after 30 epochs on digits with ``seed``: the learning test's runs.

    full: digits_ablation.yaml's model as its "full" variant; plain: digits.yaml (feature matching, the
    semi-supervised model); the same networks, data and labels."""
    raw = config.load_sweep(SPECS / "digits_ablation.yaml").run.model_dump(mode="json")
    for item in ["hparams.ablation=full", *SCORED, f"seed={seed}"]:
        set_path(raw, *config.parse_override(item))
    full = config.run_from_dict(raw)
    fm = config.load_run(SPECS / "digits.yaml", [*SCORED, f"seed={seed}"])
    return tuple(side_by_side(_train, (full,), (fm,)))


@pytest.mark.slow
def test_the_full_technique_set_gives_better_samples_than_feature_matching(tmp_path, monkeypatch):
    """Digits, 30 epochs, classifier score of 1500 samples (the fallback, 1000-step score classifier).

    Measured with this code over seeds 0-4 (one thread), full vs feature matching: classifier score 8.09 / 7.17,
    8.17 / 7.08, 8.30 / 6.78, 7.99 / 6.71, 8.04 / 7.01 (margin 0.93 to 1.52; real test digits: 8.41); FCD 50.2 / 57.1,
    74.3 / 63.4, 43.2 / 62.2, 79.4 / 65.5, 58.5 / 53.4: at 30 epochs the full set wins on FCD in 2 of 5 seeds only
    (after 80 epochs it wins in each of 3 seeds: 37.5 / 74.8, 29.0 / 54.4, 27.8 / 62.8, scores 8.55-8.76 / 6.95-6.98),
    so this asserts the score margin and only that the full set's FCD is not far worse (ratio <= 1.21 measured).
    """
    from algorithms.common import sample_quality

    monkeypatch.setenv(sample_quality.CACHE_ENV, str(tmp_path))  # a fresh, deterministic score classifier
    full, fm = sample_quality_pair(seed=0)  # each in its own process on one thread, as measured
    print(f"digits, 30 epochs: classifier score full {full['eval/classifier_score']:.3f} vs feature matching "
          f"{fm['eval/classifier_score']:.3f} (real {full['eval/classifier_score_real']:.3f}); FCD "
          f"{full['eval/fcd']:.1f} vs {fm['eval/fcd']:.1f}")
    assert full["eval/score_classifier_accuracy"] > 0.95
    assert full["eval/classifier_score"] >= fm["eval/classifier_score"] + 0.5
    assert full["eval/fcd"] <= 1.5 * fm["eval/fcd"]
