"""`genlab report`: one page that says, for every paper number, what genlab got: from MLflow only.

For a study (``genlab study``) it reads the study's runs from the tracking server or store, groups them by arm,
and writes ``report.md`` and a self-contained ``report.html`` (images embedded) with

- per claim an arm measures: the paper's value (±), ours as mean ± sd and IQM with a 95% percentile-bootstrap
  interval over seeds, the number of seeds, and whether the paper's value lies inside our interval;
- the paper's comparisons (A vs B) with the probability of improvement P(A > B) and its interval;
- learning curves: the mean over seeds with a 95% bootstrap band, one panel per claimed or compared metric;
- each arm's latest pictures (samples, traversals, reconstructions);
- every other claim of the papers of the methods involved, as "not run", with the spec that would run it.

Because it needs nothing but MLflow, it works the same on a cluster's tracking server.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from genlab import papers, plots, stats, tracking
from genlab.errors import SpecError
from genlab.tracking import TAG_ARM, TAG_SEED

# --------------------------------------------------------------------------------------------- the data


@dataclass
class Arm:
    label: str
    algorithm: str
    claims: list[str]
    dataset: str | None = None
    """The arm's ``data.name`` (None for RL arms)."""
    env: str | None = None
    """The arm's ``env.id`` (None for generative arms)."""
    runs: list = field(default_factory=list)
    """Finished MLflow runs of this arm, one per seed."""
    failed: int = 0

    def scores(self, metric: str) -> list[float]:
        """One number per finished run: the metric at its last logged step."""
        return [r.data.metrics[metric] for r in self.runs if metric in r.data.metrics]

    def seeds(self, metric: str) -> list[int]:
        """The seeds of the runs :meth:`scores` comes from."""
        return [int(r.data.tags.get(tracking.TAG_SEED, -1)) for r in self.runs if metric in r.data.metrics]


@dataclass
class Study:
    name: str
    parent: object
    arms: dict[str, Arm]
    comparisons: list[dict]
    seeds: list[int]
    tuning_seeds: list[int] | None = None
    """The seeds the arms' settings were chosen on (None: a study from before genlab recorded them)."""

    def seed_note(self, seeds: list[int]) -> str:
        """Which seeds a number rests on: "10 held-out", or with tuning seeds among them "8 held-out + 2 tuning †"."""
        if self.tuning_seeds is None:
            return f"{len(seeds)} (tuning seeds not recorded)"
        tuned = [s for s in seeds if s in self.tuning_seeds]
        held = len(seeds) - len(tuned)
        return f"{held} held-out" + (f" + {len(tuned)} tuning †" if tuned else "")


def find_study(uri: str, name: str) -> Study:
    """The most recent study of this name in any experiment of the store, with its runs grouped by arm."""
    study_runs = tracking.tagged(tracking.TAG_KIND, "study")
    parents = tracking.search(uri, f"{study_runs} and attributes.run_name = '{name}'", max_results=1,
                              newest_first=True)
    if not parents:
        studies = sorted({r.info.run_name for r in tracking.search(uri, study_runs, max_results=1000)})
        raise SpecError(f"no study named {name!r} at {uri}; studies there: {', '.join(studies) or 'none'} "
                        "(run one with `genlab study <spec>`)")
    parent = parents[0]
    spec = tracking.read_spec(uri, parent.info.run_id)
    arms = {a["label"]: Arm(a["label"], a["run"]["algorithm"], a.get("claims", []),
                            (a["run"].get("data") or {}).get("name"), (a["run"].get("env") or {}).get("id"))
            for a in spec["arms"]}
    for run in tracking.children(uri, parent.info.run_id, parent.info.experiment_id):
        arm = arms.get(run.data.tags.get(TAG_ARM))
        if arm is None:
            continue
        if run.info.status == "FINISHED":
            arm.runs.append(run)
        else:
            arm.failed += 1
    for arm in arms.values():
        arm.runs.sort(key=lambda r: int(r.data.tags.get(TAG_SEED, 0)))
    return Study(name, parent, arms, spec.get("comparisons", []), spec["seeds"], spec.get("tuning_seeds"))


# ----------------------------------------------------------------------------------------- the analysis


@dataclass
class ClaimRow:
    method: str
    claim: papers.Claim
    arm: str | None
    scores: list[float]

    @property
    def measured(self) -> bool:
        return bool(self.scores)


def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}g}"


def _stand_in(method: str, claim: papers.Claim, arm: Arm) -> str:
    """What the arm measures instead of the paper's task: the claim's stand-in note where the arm runs on the
    stand-in's dataset or env, else the arm's own (e.g. mnist5k for a claim whose stand-in is the 8x8 digits; the
    standard-engine MountainCar for one whose stand-in is the weak engine)."""
    if claim.ci is None:
        return ""
    if arm.dataset is not None and papers.stand_in_dataset(method, claim) not in (None, arm.dataset):
        return f" (data: {arm.dataset})"
    if arm.env is not None and papers.stand_in_env(method, claim) not in (None, arm.env):
        return f" (env: {arm.env})"
    return f" (stand-in: {claim.ci.note})"


def claim_rows(study: Study) -> list[ClaimRow]:
    """Every claim of the papers of the study's methods: measured by an arm, or not run."""
    methods = sorted({a.algorithm for a in study.arms.values()}
                     | {ref.split(":")[0] for a in study.arms.values() for ref in a.claims}
                     | {c["paper"].split(":")[0] for c in study.comparisons})
    rows = []
    for method in methods:
        paper = papers.load(method)
        if paper is None:
            continue
        for claim in paper.claims:
            ref = f"{method}:{claim.id}"
            arms = [a for a in study.arms.values() if ref in a.claims]
            for arm in arms or [None]:
                rows.append(ClaimRow(method, claim, arm.label if arm else None,
                                     arm.scores(claim.metric) if arm else []))
    return rows


# ------------------------------------------------------------------------------------------ the pictures


def curve_metrics(study: Study, rows: list[ClaimRow]) -> list[str]:
    """The metrics the report draws against epoch: those of the claims an arm measured and of the paper's
    comparisons both arms measured (a study of GAIL against BC claims no paper number, but compares them)."""
    claimed = {r.claim.metric for r in rows if r.measured}
    compared = set()
    for comp in study.comparisons:
        metric = papers.resolve(comp["paper"])[1].metric
        if study.arms[comp["treatment"]].scores(metric) and study.arms[comp["control"]].scores(metric):
            compared.add(metric)
    return sorted(claimed | compared)


def curves_png(study: Study, metrics: list[str], uri: str) -> bytes | None:
    """``metrics`` against epoch: each arm's mean over seeds with a 95% bootstrap band."""
    panels = {}
    for metric in metrics:
        panels[metric] = {}
        for arm in study.arms.values():
            series = [tracking.metric_history(uri, r.info.run_id, metric) for r in arm.runs]
            steps = sorted(set().union(*series)) if series else []
            if not steps:
                continue
            cis = [stats.bootstrap_ci([h[s] for h in series if s in h], np.mean, reps=500) for s in steps]
            panels[metric][f"{arm.label} (n={len(arm.runs)})"] = (
                steps, [c.estimate for c in cis], [c.low for c in cis], [c.high for c in cis])
    return plots.banded_curves_png(panels) if panels else None


def latest_images(study: Study, uri: str) -> dict[str, dict[str, bytes]]:
    """Each arm's latest pictures (``<name>/latest.png``), from its first finished run that has them."""
    out: dict[str, dict[str, bytes]] = {}
    for arm in study.arms.values():
        for run in arm.runs:
            names = tracking.artifact_dirs_with(uri, run.info.run_id, "latest.png")
            if names:
                out[arm.label] = {n: tracking.read_artifact(uri, run.info.run_id, f"{n}/latest.png") for n in names}
                break
    return out


# --------------------------------------------------------------------------------------------- the page


class Page:
    """A page as blocks, rendered to Markdown (images as files beside it) and to one self-contained HTML file."""

    def __init__(self, title: str):
        self.title = title
        self.md: list[str] = [f"# {title}", ""]
        self.html: list[str] = [f"<h1>{html.escape(title)}</h1>"]
        self.images: dict[str, bytes] = {}

    def heading(self, text: str) -> None:
        self.md += [f"## {text}", ""]
        self.html.append(f"<h2>{html.escape(text)}</h2>")

    def para(self, text: str) -> None:
        self.md += [text, ""]
        self.html.append(f"<p>{html.escape(text)}</p>")

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.md += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        self.md += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
        self.md.append("")
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        self.html.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def image(self, name: str, png: bytes, caption: str) -> None:
        file = f"images/{name}.png"
        self.images[file] = png
        self.md += [f"![{caption}]({file})", ""]
        data = base64.b64encode(png).decode()
        self.html.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def write(self, out: Path) -> tuple[Path, Path]:
        out.mkdir(parents=True, exist_ok=True)
        for file, png in self.images.items():
            (out / file).parent.mkdir(parents=True, exist_ok=True)
            (out / file).write_bytes(png)
        (out / "report.md").write_text("\n".join(self.md))
        (out / "report.html").write_text(_HTML.format(title=html.escape(self.title), body="\n".join(self.html)))
        return out / "report.md", out / "report.html"


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; image-rendering: pixelated; }}
figure {{ display: inline-block; margin: 0.5em 1em 0.5em 0; }}
figcaption {{ font-size: 0.85em; color: #555; }}
</style></head>
<body>
{body}
<script>
// The page checks itself: every embedded picture must decode (a headless browser reads the title).
window.addEventListener("load", () => {{
  const broken = [...document.images].filter(i => !i.complete || i.naturalWidth === 0).length;
  document.title = broken ? `BROKEN ${{broken}} images` : `ok ${{document.images.length}} images`;
}});
</script>
</body></html>
"""


def build(uri: str, study_name: str, out: Path) -> tuple[Path, Path]:
    """Write ``report.md`` (+ ``images/``) and ``report.html`` for a study; returns their paths."""
    study = find_study(uri, study_name)
    page = Page(f"genlab report: {study.name}")
    when = datetime.fromtimestamp(study.parent.info.start_time / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = study.parent.data.tags.get("genlab.git_commit", "unknown")
    page.para(f"Study {study.name}, started {when}, genlab commit {commit}; runs tracked at {uri}. Scores are each "
              "run's metric at its last epoch; intervals are 95% percentile-bootstrap intervals over seeds (2000 "
              "resamples); IQM is the interquartile mean.")
    if study.tuning_seeds is None:
        page.para(f"Seeds {study.seeds}. This study predates the held-out-seed protocol: it does not say which seeds "
                  "its settings were chosen on, so its numbers may rest on them.")
    else:
        held = [s for s in study.seeds if s not in study.tuning_seeds]
        page.para(f"Held-out seeds, which the claims rest on: {held}. Tuning seeds, on which the arms' settings were "
                  f"chosen: {study.tuning_seeds}."
                  + (f" † marks numbers that include runs on tuning seeds "
                     f"({[s for s in study.seeds if s in study.tuning_seeds]}, run with report_on_tuning_seeds): "
                     "they overstate what held-out seeds would show." if len(held) < len(study.seeds) else ""))
    page.heading("Arms")
    page.table(["arm", "algorithm", "finished runs", "failed", "claims"],
               [[a.label, a.algorithm, str(len(a.runs)), str(a.failed), ", ".join(a.claims) or "–"]
                for a in study.arms.values()])

    rows = claim_rows(study)
    page.heading("Claims: the paper beside ours")
    table = []
    for r in rows:
        c = r.claim
        paper_value = _fmt(c.value) + (f" ± {_fmt(c.plus_minus, 3)}" if c.plus_minus is not None else "")
        if c.value is None:
            paper_value = "qualitative"
        if not r.measured:
            reason = "not run" if r.arm is None else f"not run ({r.arm}: no finished run reported {c.metric})"
            table.append([f"{r.method}: {c.claim}", c.task, c.source, c.metric, paper_value, reason, "–", "–", "–",
                          f"`genlab train {c.spec}`"])
            continue
        mean, sd = stats.mean_sd(r.scores)
        ci = stats.bootstrap_ci(r.scores)
        inside = "–" if c.value is None else ("yes" if ci.contains(c.value) else "no")
        where = f"{r.arm}" + _stand_in(r.method, c, study.arms[r.arm])
        note = study.seed_note(study.arms[r.arm].seeds(c.metric))
        mark = " †" if "†" in note else ""
        table.append([f"{r.method}: {c.claim}", c.task, c.source, c.metric, paper_value,
                      f"{_fmt(mean)} ± {_fmt(sd, 3)}{mark}",
                      f"{_fmt(ci.estimate)} [{_fmt(ci.low)}, {_fmt(ci.high)}]{mark}", note, inside, where])
    page.table(["claim", "task", "source", "metric", "paper", "ours: mean ± sd", "ours: IQM [95% CI]", "seeds",
                "paper inside CI", "measured by"], table)

    if study.comparisons:
        page.heading("Comparisons")
        comp_rows = []
        for comp in study.comparisons:
            method, paper_comp = papers.resolve(comp["paper"])
            t, ctl = study.arms[comp["treatment"]], study.arms[comp["control"]]
            x, y = t.scores(paper_comp.metric), ctl.scores(paper_comp.metric)
            if not x or not y:
                comp_rows.append([paper_comp.claim, f"{t.label} vs {ctl.label}", paper_comp.metric, "not run", "–",
                                  "–", "–", paper_comp.source])
                continue
            better = paper_comp.mode == "max"
            poi = stats.probability_of_improvement_ci(x, y, higher_is_better=better)
            note = study.seed_note(sorted(set(t.seeds(paper_comp.metric)) | set(ctl.seeds(paper_comp.metric))))
            comp_rows.append([paper_comp.claim, f"{t.label} vs {ctl.label}", paper_comp.metric,
                              f"{_fmt(stats.iqm(x))} vs {_fmt(stats.iqm(y))}",
                              f"{poi.estimate:.2f} [{poi.low:.2f}, {poi.high:.2f}]" + (" †" if "†" in note else ""),
                              "yes" if poi.low > 0.5 else "not shown", note, paper_comp.source])
        page.table(["the paper's comparison", "arms", "metric", "IQM", "P(improvement) [95% CI]",
                    "agrees (CI above 0.5)", "seeds", "source"], comp_rows)

    curves = curves_png(study, curve_metrics(study, rows), uri)
    if curves is not None:
        page.heading("Learning curves")
        page.image("curves", curves, "mean over seeds with a 95% bootstrap band, per arm")
    pictures = latest_images(study, uri)
    if pictures:
        page.heading("Pictures (latest evaluation, first seed)")
        for label, grids in pictures.items():
            for name, png in grids.items():
                page.image(f"{_slug(label)}-{name}", png, f"{label}: {name}")
    return page.write(out)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")
