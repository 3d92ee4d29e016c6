"""Which digit classes an InfoGAN run's categorical code confuses on its test digits.

Loads each run's final weights from MLflow (as ``genlab load`` does), reads Q's first categorical code of the run's
test split, matches codes to classes with the Hungarian algorithm (as ``eval/cat_accuracy``), and prints the
accuracy, each class's recall after matching, and the confusions of 15 or more digits.

    .venv/bin/python tests/benchmarks/infogan_confusion.py RUN_ID [RUN_ID ...] [--tracking-uri sqlite:///mlflow.db]
"""

from __future__ import annotations

import argparse

import numpy as np

from genlab import data, models, tracking


def confusion(run_id: str, uri: str | None) -> tuple[float, dict[int, float], dict[int, tuple[int, int]]]:
    """(accuracy, recall per class, {true class: (most frequent wrong class, count)} for counts >= 15)."""
    from algorithms.infogan.objective import hungarian_labels

    spec, algo = models.run_spec(tracking.resolve_uri(uri), run_id), models.load(run_id, uri)
    x, y = data.test_set(data.load(spec.data))
    y = y.numpy()
    pred = hungarian_labels(algo.read_codes(x).numpy()[:, 0], y)  # as eval/cat_accuracy matches them
    recall = {k: float((pred[y == k] == k).mean()) for k in np.unique(y)}
    confused = {}
    for k in np.unique(y):
        wrong, n = np.unique(pred[(y == k) & (pred != k)], return_counts=True)
        if len(n) and n.max() >= 15:
            confused[int(k)] = (int(wrong[n.argmax()]), int(n.max()))
    return float((pred == y).mean()), recall, confused


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_ids", nargs="+")
    p.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or ./mlflow.db")
    args = p.parse_args()
    for run_id in args.run_ids:
        acc, recall, confused = confusion(run_id, args.tracking_uri)
        print(f"{run_id[:8]}  accuracy {acc:.3f}  recall " + " ".join(f"{k}:{v:.2f}" for k, v in recall.items())
              + "  confused (true -> read as, digits): "
              + (", ".join(f"{k}->{w} ({n})" for k, (w, n) in confused.items()) or "none >= 15"), flush=True)


if __name__ == "__main__":
    main()
