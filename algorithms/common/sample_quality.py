"""Sample quality the way the field computes it, and an honest fallback when the Inception weights are absent.

Inception Score (Salimans et al. 2016, section 4), with p(y|x) the classifier's softmax over the samples x:

    IS = exp( E_x KL( p(y|x) || p(y) ) ),   p(y) = E_x p(y|x),     mean and std over ``splits`` splits

Frechet distance (Heusel et al. 2017) between Gaussians fitted to the features of real and generated images:

    FD = ||mu_r - mu_g||^2 + Tr( S_r + S_g - 2 (S_r S_g)^(1/2) )

Both are computed by torch-fidelity's own functions (``isc_features_to_metric``, ``fid_features_to_statistics``,
``fid_statistics_to_metric``), so the numbers are the field's:

- **Inception** (:class:`InceptionFeatures`): torch-fidelity's Inception v3 (``logits_unbiased`` for IS, the 2048-d
  pool features for FID), its weights read from a local file (:mod:`algorithms.common.inception_weights`), never
  downloaded. These are the Inception Score and FID of the literature.
- **Classifier fallback** (:class:`ScoreClassifier`): the same formulas in the logits and penultimate features of a
  small convolutional classifier that genlab trains on the dataset's training split, deterministically (fixed seed,
  fixed steps) and cached on disk (``$GENLAB_CACHE``, else ``~/.genlab/cache``), so scores are comparable across
  runs on the same dataset. They are named "classifier score" and "FCD" (Frechet classifier distance) and are not
  comparable with published Inception numbers.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from algorithms.common import inception_weights
from genlab.errors import NotRetryable

CACHE_ENV = "GENLAB_CACHE"
CLASSIFIER_VERSION = 1
"""Bump when the score classifier's architecture or training changes: cached nets are keyed by it."""

FeatureFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""Images in [-1, 1] (N x C x H x W) -> (logits, features), both float32 on the CPU."""


class MissingWeights(NotRetryable, FileNotFoundError):
    """The Inception weights file is not there: a retry cannot fix it (the run fails at once, naming the file)."""


# ----------------------------------------------------------------------------------------------- formulas


def score_from_logits(logits: torch.Tensor, splits: int) -> tuple[float, float]:
    """(mean, std) over ``splits`` splits of exp(E KL(p(y|x) || p(y))), p(y|x) = softmax(logits)."""
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

    out = isc_features_to_metric(logits.cpu(), splits=splits, shuffle=True, rng_seed=2020)
    return out[KEY_METRIC_ISC_MEAN], out[KEY_METRIC_ISC_STD]


def gaussian_stats(features: torch.Tensor) -> dict[str, np.ndarray]:
    """Mean and covariance (float64) of the features, as torch-fidelity's FID fits them."""
    from torch_fidelity.metric_fid import fid_features_to_statistics

    return fid_features_to_statistics(features.detach().double().cpu())


def frechet_distance(stats_a: dict[str, np.ndarray], stats_b: dict[str, np.ndarray]) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) (torch-fidelity's FID formula)."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    return fid_statistics_to_metric(stats_a, stats_b, verbose=False)[KEY_METRIC_FID]


# ----------------------------------------------------------------------------------------------- Inception


class InceptionFeatures:
    """torch-fidelity's Inception v3 from a local weights file: images -> (logits_unbiased, 2048-d pool features).

    Images in [-1, 1] are quantised to 8 bits as a saved image would be; one channel is repeated to three.
    """

    def __init__(self, weights: str | None, device: torch.device | str = "cpu", batch_size: int = 100):
        problem = inception_weights.problem(weights)
        if problem:
            raise MissingWeights(f"Inception weights: {problem}")
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["logits_unbiased", "2048"],
                                               feature_extractor_weights_path=weights).to(device)
        self.device, self.batch_size = torch.device(device), batch_size

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, feats = [], []
        for xb in x.split(self.batch_size):
            xb = ((xb.to(self.device) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
            if xb.shape[1] == 1:
                xb = xb.expand(-1, 3, -1, -1)
            lo, fe = self.net(xb)
            logits.append(lo.float().cpu())
            feats.append(fe.float().cpu())
        return torch.cat(logits), torch.cat(feats)


# ----------------------------------------------------------------------------------------------- fallback


class ScoreClassifier(nn.Module):
    """A small classifier for the fallback scores: three 3x3 conv + ReLU blocks (32, 64 channels, then 128 at
    stride 2 twice), global average pooling (the 128-d features for the Frechet distance), a dense layer to K."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.head(features), features

    @torch.no_grad()
    def features(self, x: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, features) of ``x`` on the CPU, evaluated in batches on the net's device."""
        device = next(self.parameters()).device
        out = [self(xb.to(device)) for xb in x.split(batch_size)]
        return torch.cat([o[0] for o in out]).float().cpu(), torch.cat([o[1] for o in out]).float().cpu()


def train_score_classifier(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, steps: int, seed: int = 0,
                           batch_size: int = 128, device: torch.device | str = "cpu") -> ScoreClassifier:
    """Train :class:`ScoreClassifier` on (x, y) with Adam (lr 1e-3) for ``steps`` batches drawn with ``seed``.

    Runs inside a forked CPU RNG state: it neither reads nor advances the caller's CPU random stream.
    """
    with torch.random.fork_rng(devices=[]), torch.enable_grad():  # (evaluation runs under no_grad)
        torch.manual_seed(seed)
        net = ScoreClassifier(x.shape[1], num_classes).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            idx = torch.randint(len(x), (min(batch_size, len(x)),), generator=g)
            logits, _ = net(x[idx].to(device))
            loss = F.cross_entropy(logits, y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval().requires_grad_(False)


def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".genlab" / "cache"


def _key(x: torch.Tensor, y: torch.Tensor, num_classes: int, steps: int, seed: int) -> str:
    h = hashlib.sha256(f"v{CLASSIFIER_VERSION}-{num_classes}-{steps}-{seed}-{tuple(x.shape)}".encode())
    h.update(x.detach().float().cpu().contiguous().numpy())
    h.update(y.detach().long().cpu().contiguous().numpy())
    return h.hexdigest()[:20]


def cached_score_classifier(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, steps: int, seed: int = 0,
                            device: torch.device | str = "cpu", name: str = "data") -> tuple[ScoreClassifier, Path]:
    """The score classifier of this training set: loaded from the cache when trained before (same data, steps,
    seed and version), else trained and written there (atomically: concurrent trials may race). Returns it and
    its file."""
    path = cache_dir() / "score_classifier" / f"{name}-{_key(x, y, num_classes, steps, seed)}.pt"
    net = ScoreClassifier(x.shape[1], num_classes)
    if path.is_file():
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return net.to(device).eval().requires_grad_(False), path
    net = train_score_classifier(x, y, num_classes, steps=steps, seed=seed, device=device)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
        torch.save({k: v.cpu() for k, v in net.state_dict().items()}, f)
    os.replace(f.name, path)
    return net, path


# ----------------------------------------------------------------------------------------------- scoring


class SampleScorer:
    """Scores batches of images against a real reference set with one feature network.

    The real set's feature statistics are computed once (the first time they are needed) and kept.
    """

    def __init__(self, features: FeatureFn, reference_x: torch.Tensor, splits: int = 10):
        self.features, self.reference_x, self.splits = features, reference_x, splits
        self._reference_stats: dict[str, np.ndarray] | None = None

    def reference_stats(self) -> dict[str, np.ndarray]:
        if self._reference_stats is None:
            feats = self.features(self.reference_x)[1]
            with blas_threads_like_torch():
                self._reference_stats = gaussian_stats(feats)
        return self._reference_stats

    def score(self, x: torch.Tensor) -> tuple[float, float, float]:
        """(score mean, score std over the splits, Frechet distance to the reference set) of images ``x``."""
        logits, feats = self.features(x)
        mean, std = score_from_logits(logits, self.splits)
        reference = self.reference_stats()
        with blas_threads_like_torch():
            return mean, std, frechet_distance(gaussian_stats(feats), reference)


def blas_threads_like_torch():
    """NumPy's BLAS (the Frechet distance's covariances and the eigenvalues of a 2048 x 2048 product) limited to
    torch's thread count, which the runner sets to the worker's CPUs. Left alone, OpenBLAS starts a thread per core
    of the node, and on a loaded machine they mostly spin (docs/performance.md has the measurement)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=torch.get_num_threads(), user_api="blas")
