"""`genlab runs`: an experiment's training runs as a text table that fits a terminal."""

from __future__ import annotations

import shutil

from genlab import tracking
from genlab.tracking import TAG_KIND, TAG_SWEEP


def _short(value: str) -> str:
    """A parameter's text with a long float cut to 4 significant digits (Optuna samples 0.0012345678901234)."""
    try:
        f = float(value)
    except ValueError:
        return value
    return value if value.lstrip("-").isdigit() else f"{f:.4g}"


def runs_table(uri: str, experiment: str, max_runs: int = 50, *, wide: bool = False, width: int | None = None) -> str:
    """A text table of an experiment's training runs that fits a terminal.

    Rows: short run names (a trial's sweep prefix dropped), status, the sweep; columns: the parameters that differ
    between the runs (``hparams.`` dropped), then the sweep's metric, then the other ``eval/*`` metrics, numbers to 4
    significant digits. Metrics are those of the model each run keeps (as the sweep ranks them). ``wide=True`` adds
    every differing parameter and every metric, and does not cut to ``width``.
    """
    import pandas as pd

    exp = tracking.find_experiment(uri, experiment)
    if exp is None:
        raise LookupError(f"no MLflow experiment {experiment!r} at {uri}; experiments there: "
                          + (", ".join(tracking.experiment_names(uri)) or "none"))
    runs = tracking.search(uri, experiment_ids=[exp.experiment_id], max_results=max_runs, newest_first=True)
    sweep_metric = {r.info.run_name: r.data.params.get("metric") for r in runs if r.data.tags.get(TAG_KIND) == "sweep"}
    trials = [r for r in runs if r.data.tags.get(TAG_KIND) != "sweep"]  # a sweep's parent holds no training
    if not trials:
        return f"experiment {experiment!r} has no training runs"
    rows = []
    for r in trials:
        sweep = r.data.tags.get(TAG_SWEEP, "")
        name = r.info.run_name.removeprefix(f"{sweep}-") if sweep else r.info.run_name
        row = {"run": name, "status": r.info.status.lower(), "sweep": sweep}
        row.update({f"p:{k}": _short(v) for k, v in r.data.params.items()})
        row.update({f"m:{k}": v for k, v in tracking.kept_model_metrics(uri, r).items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    pcols = [c for c in df.columns if c.startswith("p:") and df[c].astype(str).nunique(dropna=False) > 1]
    mcols = sorted(c for c in df.columns if c.startswith("m:"))
    first = [f"m:{m}" for m in dict.fromkeys(v for v in sweep_metric.values() if v) if f"m:{m}" in df.columns]
    if not wide:
        pcols = [c for c in pcols if not c.startswith(("p:tracking.", "p:name"))]
        mcols = [c for c in mcols if c.startswith("m:eval/")]
    mcols = first + [c for c in mcols if c not in first]
    cols = ["run", "status"] + (["sweep"] if df["sweep"].astype(bool).any() else []) + pcols + mcols
    df = df[cols].rename(columns=lambda c: c.removeprefix("p:").removeprefix("m:").removeprefix("hparams."))
    text = df.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.4g}")
    if wide:
        return text
    width = width or shutil.get_terminal_size((120, 40)).columns
    lines = text.splitlines()
    if max(map(len, lines)) > width:
        lines = [line[:width - 1] + "…" if len(line) > width else line for line in lines]
        lines.append("(cut to the terminal's width; --wide shows every column)")
    return "\n".join(lines)
