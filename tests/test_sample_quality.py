"""Sample-quality metrics: the Frechet distance and the Inception-Score formula against independent references, the
Inception weights loader on a weights file the test writes (random weights, the right architecture), the seeded and
cached fallback classifier, and the scores reported by Improved-GAN's evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from conftest import ROOT

from algorithms.common import inception_weights
from algorithms.common import sample_quality as sq
from algorithms.improved_gan.algorithm import ImprovedGAN
from algorithms.improved_gan.hparams import CLASSIFIER_SCORE_METRICS, INCEPTION_METRICS, ImprovedGANHparams
from genlab import config, preflight
from genlab.context import DataContext
from genlab.errors import NotRetryable, SpecError

SPECS = ROOT / "sweeps" / "improved_gan"


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small nets: one thread is fastest


# ------------------------------------------------------------------------------------------ formulas


def _scipy_frechet(mu1, s1, mu2, s2) -> float:
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_distance_against_scipy_on_known_gaussians():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    got = sq.frechet_distance({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2})
    assert got == pytest.approx(_scipy_frechet(mu1, s1, mu2, s2), rel=1e-8)
    # Commuting (diagonal) covariances: sum (sqrt(l1) - sqrt(l2))^2 in closed form.
    d1, d2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 9.0])
    m = np.array([1.0, 0.0, -1.0])
    closed = 2.0 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0
    assert sq.frechet_distance({"mu": m, "sigma": d1}, {"mu": 0 * m, "sigma": d2}) == pytest.approx(closed)
    assert sq.frechet_distance({"mu": mu1, "sigma": s1}, {"mu": mu1, "sigma": s1}) == pytest.approx(0, abs=1e-8)


def test_frechet_distance_of_samples_approaches_the_gaussians():
    """Fitted to 200k samples of N(mu1, S1) and N(mu2, S2), FD is close to the exact distance of the two."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=(3, 3))
    s1, s2 = np.eye(3), a @ a.T + np.eye(3)
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 0.5])
    x1 = torch.from_numpy(rng.multivariate_normal(mu1, s1, 200_000))
    x2 = torch.from_numpy(rng.multivariate_normal(mu2, s2, 200_000))
    got = sq.frechet_distance(sq.gaussian_stats(x1), sq.gaussian_stats(x2))
    assert got == pytest.approx(_scipy_frechet(mu1, s1, mu2, s2), rel=0.02)


def test_score_formula_by_hand():
    k = 5
    confident = torch.eye(k).repeat(20, 1) * 50  # sure of its class, classes used equally: IS = K
    mean, std = sq.score_from_logits(confident, splits=1)
    assert mean == pytest.approx(k, rel=1e-6) and std == 0
    same = torch.randn(1, k).repeat(40, 1)  # every image the same p(y|x): KL 0, IS = 1
    assert sq.score_from_logits(same, splits=2)[0] == pytest.approx(1.0)
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [-1.0, 0.5, 3.0]], dtype=torch.float64)
    p = logits.softmax(1)
    py = p.mean(0)
    expected = torch.exp((p * (p.log() - py.log())).sum(1).mean()).item()
    assert sq.score_from_logits(logits, splits=1)[0] == pytest.approx(expected)


def test_frechet_distance_runs_on_as_many_blas_threads_as_torch(monkeypatch):
    from threadpoolctl import threadpool_info

    def blas_threads() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    seen, real = [], sq.frechet_distance
    monkeypatch.setattr(sq, "frechet_distance", lambda a, b: seen.append(blas_threads()) or real(a, b))
    before = blas_threads()
    assert before, "NumPy's BLAS is not seen by threadpoolctl"
    scorer = sq.SampleScorer(lambda x: (x.flatten(1)[:, :3], x.flatten(1)), torch.randn(50, 1, 2, 2))
    scorer.score(torch.randn(40, 1, 2, 2))  # torch has 1 thread here (the fixture)
    assert seen == [[1] * len(before)] and blas_threads() == before  # limited while scoring, restored after


# ------------------------------------------------------------------------------------------ Inception


@pytest.fixture(scope="module")
def random_inception_file(tmp_path_factory):
    """torch-fidelity's FeatureExtractorInceptionV3 state dict, randomly initialised, written as a weights file."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    mp = pytest.MonkeyPatch()
    mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})  # no download: keep the random init
    mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state, *a, **k: None)
    try:
        torch.manual_seed(0)
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    finally:
        mp.undo()
    path = tmp_path_factory.mktemp("inception") / inception_weights.FILENAME
    torch.save(net.state_dict(), path)
    return path


def test_the_weights_file_named_is_torch_fidelitys():
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    assert inception_weights.URL == URL_INCEPTION_V3


def test_inception_features_from_a_local_weights_file(random_inception_file, monkeypatch):
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    monkeypatch.setattr(fe, "load_state_dict_from_url", lambda *a, **k: pytest.fail("tried to download the weights"))
    net = sq.InceptionFeatures(str(random_inception_file))
    for shape in [(3, 3, 32, 32), (2, 1, 8, 8)]:  # CIFAR-like RGB and digits-like grey images
        logits, feats = net(torch.rand(*shape) * 2 - 1)
        assert logits.shape == (shape[0], 1008) and feats.shape == (shape[0], 2048)
        assert torch.isfinite(logits).all() and torch.isfinite(feats).all()
    state = torch.load(random_inception_file, weights_only=False)
    torch.testing.assert_close(net.net.fc.weight, state["fc.weight"])  # the file's weights, not others


def test_a_missing_weights_file_is_named_with_where_to_get_it(tmp_path):
    missing = tmp_path / "nothing.pth"
    with pytest.raises(FileNotFoundError, match=f"{missing} does not exist.*{inception_weights.URL}"):
        sq.InceptionFeatures(str(missing))
    with pytest.raises(FileNotFoundError, match="no weights file is named.*GENLAB_INCEPTION_WEIGHTS"):
        sq.InceptionFeatures(None)
    # A worker whose node lacks the file fails the run at its start, without retries (NotRetryable).
    with pytest.raises(sq.MissingWeights, match=f"hparams.inception_weights: {missing} does not exist"):
        ImprovedGAN(ImprovedGANHparams(**SMALL, sample_scores=["inception"], inception_weights=str(missing)), INFO)
    assert issubclass(sq.MissingWeights, NotRetryable)


def test_validate_refuses_a_missing_weights_file_before_ray(tmp_path, monkeypatch, random_inception_file):
    monkeypatch.delenv(inception_weights.ENV, raising=False)
    overrides = ["hparams.sample_scores=[inception]"]
    spec = config.load_run(SPECS / "digits.yaml", overrides)  # a spec without the file still loads (CI has none)
    assert spec.hparams["inception_weights"] is None
    with pytest.raises(SpecError, match="hparams.inception_weights: sample_scores has inception but no weights"):
        preflight.check(spec, source="digits.yaml", cluster=False)
    monkeypatch.setenv(inception_weights.ENV, str(tmp_path / "absent.pth"))
    spec = config.load_run(SPECS / "digits.yaml", overrides)
    assert spec.hparams["inception_weights"] == str(tmp_path / "absent.pth")  # resolved from the environment
    with pytest.raises(SpecError, match=f"hparams.inception_weights: {tmp_path / 'absent.pth'} does not exist"):
        preflight.check(spec, source="digits.yaml", cluster=False)
    monkeypatch.setenv(inception_weights.ENV, str(random_inception_file))
    preflight.check(config.load_run(SPECS / "digits.yaml", overrides), source="digits.yaml", cluster=False)
    # On a cluster the file lives on the workers' file systems: not checked here.
    monkeypatch.delenv(inception_weights.ENV)
    preflight.check(config.load_run(SPECS / "digits.yaml", overrides), source="digits.yaml", cluster=True)


# ------------------------------------------------------------------------------------------ fallback


def _digits(n: int = 400):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images[:n]).float().unsqueeze(1) / 8 - 1
    return x, torch.from_numpy(d.target[:n]).long()


def test_score_classifier_is_seeded_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv(sq.CACHE_ENV, str(tmp_path))
    x, y = _digits()
    rng_before = torch.get_rng_state()
    a = sq.train_score_classifier(x, y, 10, steps=20, seed=3)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's random stream is untouched
    b = sq.train_score_classifier(x, y, 10, steps=20, seed=3)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)

    net, path = sq.cached_score_classifier(x, y, 10, steps=20, seed=3, name="digits")
    assert path.is_file() and path.is_relative_to(tmp_path)
    path.touch()
    mtime = path.stat().st_mtime_ns
    again, path2 = sq.cached_score_classifier(x, y, 10, steps=20, seed=3, name="digits")
    assert path2 == path and path.stat().st_mtime_ns == mtime  # loaded, not retrained
    torch.testing.assert_close(again.features(x)[0], a.features(x)[0], rtol=0, atol=0)
    other, path3 = sq.cached_score_classifier(x[:-1], y[:-1], 10, steps=20, seed=3, name="digits")
    assert path3 != path  # other data, another net


# ------------------------------------------------------------------------------------------ in the algorithm

INFO = DataContext((1, 8, 8), 10, "digits")
SMALL = {"arch": "mlp", "d_hidden": [32, 16], "g_hidden": [32], "z_dim": 8}


def test_evaluation_reports_the_classifier_scores_at_their_cadence(tmp_path, monkeypatch):
    monkeypatch.setenv(sq.CACHE_ENV, str(tmp_path))
    x, y = _digits()
    torch.manual_seed(0)
    algo = ImprovedGAN(ImprovedGANHparams(**SMALL, sample_scores=["classifier"], score_every=2, score_samples=200,
                                         score_classifier_steps=80), INFO)
    with pytest.raises(RuntimeError, match="set_evaluation_data"):
        algo.evaluate(x[:50], y[:50])
    algo.set_evaluation_data(lambda: (x[:300], y[:300]))
    algo.initialize({"x": x[:50]})
    algo.end_epoch(1)
    first = algo.evaluate(x[300:], y[300:])  # nothing scored yet: scored now
    assert set(CLASSIFIER_SCORE_METRICS) <= set(first)
    assert 1 <= first["eval/classifier_score"] <= 10 and first["eval/fcd"] > 0
    assert first["eval/score_classifier_accuracy"] > 0.7  # the classifier itself learned the digits
    assert first["eval/classifier_score_real"] > first["eval/classifier_score"]  # real digits beat an untrained G
    batch = {"x": x[:12], "x_lab": x[12:24], "y_lab": y[12:24]}
    algo.train_step(batch)
    algo.end_epoch(3)
    assert algo.evaluate(x[300:], y[300:])["eval/fcd"] == first["eval/fcd"]  # epoch 3: not due, the last scores
    algo.end_epoch(4)
    assert algo.evaluate(x[300:], y[300:])["eval/fcd"] != first["eval/fcd"]  # G changed: scored again


def test_without_sample_scores_the_training_split_is_never_converted():
    x, y = _digits(60)
    torch.manual_seed(0)
    algo = ImprovedGAN(ImprovedGANHparams(**SMALL), INFO)
    algo.set_evaluation_data(lambda: pytest.fail("the training split was converted"))
    algo.initialize({"x": x[:20]})
    assert "eval/classifier_score" not in algo.evaluate(x[40:], y[40:])


def test_evaluation_reports_inception_score_and_fid(random_inception_file, monkeypatch):
    monkeypatch.setenv(inception_weights.ENV, str(random_inception_file))
    x, y = _digits(60)
    torch.manual_seed(0)
    hp = ImprovedGANHparams(**SMALL, sample_scores=["inception"], score_samples=4, score_splits=2)
    assert hp.inception_weights == str(random_inception_file)
    algo = ImprovedGAN(hp, INFO)
    algo.set_evaluation_data(lambda: (x[:4], y[:4]))
    algo.initialize({"x": x[:20]})
    out = algo.evaluate(x[50:54], y[50:54])
    assert set(INCEPTION_METRICS) <= set(out) and not set(CLASSIFIER_SCORE_METRICS) & set(out)
    assert out["eval/inception_score"] >= 1 and np.isfinite(out["eval/fid"])
