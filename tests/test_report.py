"""Studies and `genlab report`: the interval code against hand-computed cases, the paper files, study specs, and a
report built from a small real study (every section; no claim without a number or an explicit "not run"), opened
in a real headless browser."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import yaml
from conftest import ROOT, genlab_run, sqlite_store

from genlab import papers, stats, studies
from genlab.errors import SpecError
from genlab.specs import HELD_OUT_FROM

# --------------------------------------------------------------------------------------------- statistics


def test_iqm_is_the_mean_of_the_middle_half():
    assert stats.iqm([1, 2, 3, 4, 5, 6, 7, 8]) == 4.5  # drops 1, 2 and 7, 8
    assert stats.iqm([1, 2, 3, 4, 100, 5, 6, 7]) == 4.5  # an outlying seed does not move it
    assert stats.iqm([2.0, 4.0, 9.0]) == 5.0  # three runs: nothing to trim


def test_bootstrap_interval_cases_by_hand():
    assert stats.bootstrap_ci([3.0, 3.0, 3.0]) == stats.Interval(3.0, 3.0, 3.0)  # no spread: the point itself
    # Two tasks, each constant: every stratified resample keeps each task's runs, so the IQM never moves.
    ci = stats.bootstrap_ci({"a": [1.0, 1.0], "b": [5.0, 5.0]})
    assert (ci.low, ci.estimate, ci.high) == (3.0, 3.0, 3.0)
    # Two values 0 and 1, mean: resamples of 2 give 0, 0.5 or 1 with probability 1/4, 1/2, 1/4.
    ci = stats.bootstrap_ci([0.0, 1.0], np.mean, reps=4000)
    assert ci.estimate == 0.5 and ci.low == 0.0 and ci.high == 1.0
    ci = stats.bootstrap_ci([0.0, 1.0], np.mean, confidence=0.4, reps=4000)  # the middle 40%: only 0.5
    assert ci.low == ci.high == 0.5
    with pytest.raises(ValueError, match="at least one score"):
        stats.bootstrap_ci({"a": []})


def test_probability_of_improvement_by_hand():
    assert stats.probability_of_improvement([3, 4], [1, 2]) == 1.0
    assert stats.probability_of_improvement([1, 2], [3, 4]) == 0.0
    assert stats.probability_of_improvement([1, 3], [2, 2]) == 0.5  # one win, one loss of each pair
    assert stats.probability_of_improvement([2], [2]) == 0.5  # a tie counts half
    assert stats.probability_of_improvement([0.1, 0.2], [0.3, 0.4], higher_is_better=False) == 1.0  # errors
    ci = stats.probability_of_improvement_ci([3, 4, 5], [0, 1, 2])
    assert ci == stats.Interval(1.0, 1.0, 1.0)
    assert stats.mean_sd([1.0, 3.0]) == (2.0, pytest.approx(2**0.5))


# --------------------------------------------------------------------------------------------- specs


def test_every_methods_paper_file_is_valid_and_names_shipped_specs():
    found = papers.all_papers()
    assert {"improved_gan", "gail"} <= set(found)
    for method, paper in found.items():
        for claim in paper.claims:
            assert (ROOT / claim.spec).is_file(), f"{method}:{claim.id}: {claim.spec}"
            if claim.ci:
                assert (ROOT / claim.ci.spec).is_file(), f"{method}:{claim.id}: {claim.ci.spec}"


def test_study_specs_are_checked_before_anything_runs(tmp_path):
    base = {"name": "s", "tuning_seeds": [0, 1], "seeds": [1000, 1001], "arms": [
        {"label": "a", "run": "../../sweeps/improved_gan/digits.yaml", "claims": ["improved_gan:mnist-100-labels"]},
        {"label": "b", "run": "../../sweeps/improved_gan/digits.yaml", "set": {"hparams.unlabeled_weight": 0}}]}

    def load(changes: dict):
        spec = tmp_path / "x" / "y" / "study.yaml"
        spec.parent.mkdir(parents=True, exist_ok=True)
        spec.write_text(yaml.safe_dump({**base, **changes}))
        # the run paths above are relative to the study file: point them at the repository's specs
        raw = yaml.safe_load(spec.read_text())
        for arm in raw["arms"]:
            arm["run"] = str(ROOT / "sweeps/improved_gan/digits.yaml")
        spec.write_text(yaml.safe_dump(raw))
        return studies.load(spec)

    study = load({})
    assert study.arm("b").run.hparams["unlabeled_weight"] == 0 and study.arm("a").run.hparams["unlabeled_weight"] > 0
    cases = [
        ({"comparisons": [{"paper": "improved_gan:ssl-beats-supervised", "treatment": "a", "control": "c"}]},
         "comparisons[0].control: 'c' is not an arm"),
        ({"arms": [{**base["arms"][0], "claims": ["improved_gan:mnist-1-label"]}]},
         "no claim 'mnist-1-label'; it has: mnist-100-labels"),
        ({"arms": [{**base["arms"][0], "claims": ["dcgan:x"]}]}, "no paper.yaml for method 'dcgan'"),
        ({"comparisons": [{"paper": "improved_gan:mnist-100-labels", "treatment": "a", "control": "b"}]},
         "is a claim, not a comparison"),
        ({"seeds": [1000, 1000]}, "seeds: must be distinct"),
        ({"seeds": [1, 1000]}, "seeds: [1] are tuning seeds (tuning_seeds: [0, 1]): a claim measured on the seeds its "
                               "settings were chosen on overstates it"),
        ({"tuning_seeds": []}, "tuning_seeds: List should have at least 1 item"),
        ({"arms": [base["arms"][0], {**base["arms"][0]}]}, "arms: labels must be unique"),
    ]
    for changes, message in cases:
        with pytest.raises(SpecError, match=re.escape(message)):
            load(changes)

    # Reporting on tuning seeds takes saying so (the report marks those numbers).
    assert load({"seeds": [1, 1000], "report_on_tuning_seeds": True}).tuned_on() == [1]
    # No seeds given: drawn from the held-out range by the study's name, the same each time, others for another name.
    drawn = load({"seeds": None, "num_seeds": 4}).seeds
    assert len(set(drawn)) == 4 and min(drawn) >= HELD_OUT_FROM and drawn == load({"seeds": None, "num_seeds": 4}).seeds
    assert load({"seeds": None, "num_seeds": 4, "name": "t"}).seeds != drawn


def test_resuming_a_study_whose_seeds_changed_is_refused_before_ray_starts(tmp_path, monkeypatch):
    """Tune restores the grid a study started with: a seed added to the spec since would never run, and the study
    would end "interrupted" again at every --resume. The check compares with the spec its MLflow run logged."""
    from genlab import tracking
    from genlab.runners.study import check_resume

    monkeypatch.chdir(tmp_path)
    sqlite_store(tmp_path / "mlflow.db")  # the specs' default store, in the working directory
    raw = {"name": "s", "tuning_seeds": [0], "seeds": [1000, 1001], "arms": [
        {"label": "a", "run": str(ROOT / "sweeps/improved_gan/digits.yaml")},
        {"label": "b", "run": str(ROOT / "sweeps/improved_gan/digits.yaml"), "set": {"hparams.unlabeled_weight": 0}}]}
    path = tmp_path / "study.yaml"

    def spec(**changes):
        path.write_text(yaml.safe_dump({**raw, **changes}))
        return studies.load(path)

    started, study_dir = spec(), tmp_path / "results" / "s"
    uri = tracking.resolve_uri(started.tracking.uri)
    tracking.open_run(uri, started.tracking.experiment, run_name="s", config=started.model_dump(mode="json"),
                      tags={tracking.TAG_STUDY_DIR: str(study_dir)})
    check_resume(started, study_dir)  # unchanged: resumes
    check_resume(spec(seeds=[1000, 1001, 1002]), tmp_path / "results" / "other")  # another study's folder: no run
    with pytest.raises(SpecError, match=re.escape("was started with arms ['a', 'b'] on seeds [1000, 1001], and its "
                                                  "spec now has arms ['a', 'b'] on seeds [1000, 1001, 1002]")):
        check_resume(spec(seeds=[1000, 1001, 1002]), study_dir)
    with pytest.raises(SpecError, match="--set name=s-more"):
        check_resume(spec(arms=raw["arms"][:1]), study_dir)
    # A tracker that does not answer is left to the study's start, which says so in one line.
    check_resume(spec(seeds=[1000, 1001, 1002], tracking={"uri": "http://127.0.0.1:9"}), study_dir)


# --------------------------------------------------------------------------------------------- a real study

STUDY = {
    "name": "tiny-study",
    "arms": [
        {"label": "Improved-GAN", "run": str(ROOT / "sweeps/improved_gan/digits.yaml"),
         "set": {"budget.epochs": 3, "budget.eval_every": 1, "hparams.d_hidden": [64, 32], "hparams.g_hidden": [32],
                 "resources.cpus_per_worker": 1},
         "claims": ["improved_gan:mnist-100-labels"]},
        {"label": "supervised only", "run": str(ROOT / "sweeps/improved_gan/digits.yaml"),
         "set": {"budget.epochs": 3, "budget.eval_every": 1, "hparams.d_hidden": [64, 32], "hparams.g_hidden": [32],
                 "resources.cpus_per_worker": 1, "hparams.unlabeled_weight": 0}},
    ],
    "comparisons": [{"paper": "improved_gan:ssl-beats-supervised", "treatment": "Improved-GAN",
                     "control": "supervised only"}],
    "tuning_seeds": [0],
    "seeds": [0, 1000],
    "report_on_tuning_seeds": True,  # seed 0 is a tuning seed: the report must mark its numbers
    "max_concurrent": 2,
}


@pytest.mark.slow
def test_a_report_from_a_real_study_has_every_section_and_opens_in_a_browser(tmp_path):
    spec = tmp_path / "study.yaml"
    spec.write_text(yaml.safe_dump(STUDY))
    sqlite_store(tmp_path / "mlflow.db")  # the CLI's default store in its working directory
    out = genlab_run(tmp_path, "study", spec, "--storage", tmp_path / "results", "--num-cpus", "2").stdout
    assert "Study tiny-study: 4 runs (2 arms x 2 seeds), 0 failed" in out and "genlab report tiny-study" in out

    report = genlab_run(tmp_path, "report", "tiny-study", "--out", tmp_path / "report").stdout
    md = (tmp_path / "report" / "report.md").read_text()
    for section in ("## Arms", "## Claims: the paper beside ours", "## Comparisons", "## Learning curves",
                    "## Pictures (latest evaluation, first seed)"):
        assert section in md, section
    claims = [line for line in md.splitlines() if line.startswith("| improved_gan: ")]
    assert len(claims) == len(papers.load("improved_gan").claims)  # every claim of the paper: one measured here
    measured = [c for c in claims if "not run" not in c]
    assert len(measured) == 1 and "MNIST, 100 labels (10 per class)" in measured[0], measured
    assert " ± " in measured[0] and "| 1 held-out + 1 tuning † |" in measured[0], measured  # over the 2 seeds
    assert "Held-out seeds, which the claims rest on: [1000]. Tuning seeds, on which the arms' settings were chosen: " \
           "[0]. † marks numbers that include runs on tuning seeds ([0]" in md
    for c in claims:  # a number or an explicit "not run", never an empty cell
        cells = [x.strip() for x in c.strip("|").split("|")]
        assert all(cells), c
    assert "P(improvement)" in md and (tmp_path / "report" / "images" / "curves.png").is_file()
    assert str(tmp_path / "report" / "report.html") in report

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium here (.ci/run installs Debian's chromium)")
    page = tmp_path / "report" / "report.html"
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'chrome'}", "--virtual-time-budget=10000", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    n_images = md.count("![")
    assert f"<title>ok {n_images} images</title>" in dom.stdout, dom.stdout[:500]


def test_a_claims_stand_in_note_is_shown_only_for_arms_on_the_stand_ins_dataset_or_env():
    from genlab.report import Arm, _stand_in

    claim = papers.load("improved_gan").claim("mnist-100-labels")  # its stand-in: the 8x8 digits
    on_digits = _stand_in("improved_gan", claim, Arm("Improved-GAN", "improved_gan", [], "digits"))
    on_mnist5k = _stand_in("improved_gan", claim, Arm("Improved-GAN", "improved_gan", [], "mnist5k"))
    assert on_digits == f" (stand-in: {claim.ci.note})" and "8x8" in on_digits
    assert on_mnist5k == " (data: mnist5k)"  # real MNIST digits are not described as the 8x8 stand-in
    # The same for an RL arm's env: VIME's MountainCar claims have the weak-engine task as their stand-in.
    claim = papers.load("vime").claim("sparse-mountaincar")
    weak = _stand_in("vime", claim, Arm("VIME", "vime", [], env="genlab/SparseMountainCarWeakEngine-v0"))
    standard = _stand_in("vime", claim, Arm("VIME", "vime", [], env="genlab/SparseMountainCar-v0"))
    assert weak == f" (stand-in: {claim.ci.note})" and standard == " (env: genlab/SparseMountainCar-v0)"


def test_the_learning_curves_cover_a_compared_metric_when_no_arm_claims_a_paper_number():
    """A study of GAIL against BC on HalfCheetah claims no paper value (the paper file has none for that task) but
    compares the two: its report drew no learning curves at all."""
    from mlflow.entities import Metric, Run, RunData, RunInfo

    from genlab.report import Arm, Study, claim_rows, curve_metrics

    def run(score: float) -> Run:
        info = RunInfo(run_id="r", experiment_id="1", user_id="u", status="FINISHED", start_time=0, end_time=1,
                       lifecycle_stage="active")
        return Run(info, RunData(metrics=[Metric("eval/normalized_score", score, 0, 244)]))

    arms = {"GAIL": Arm("GAIL", "gail", [], runs=[run(1.1)]),
            "behavior cloning": Arm("behavior cloning", "bc", [], runs=[run(1.05)])}
    compared = [{"paper": "gail:gail-beats-bc", "treatment": "GAIL", "control": "behavior cloning"}]
    study = Study("gail-halfcheetah", None, arms, compared, seeds=[1001])
    assert curve_metrics(study, claim_rows(study)) == ["eval/normalized_score"]
    assert curve_metrics(Study("s", None, arms, [], seeds=[1001]), claim_rows(study)) == []  # none claimed, compared

    arms["GAIL"].claims = ["gail:hopper-25"]  # a claimed metric is drawn as before, and only once
    assert curve_metrics(study, claim_rows(study)) == ["eval/normalized_score"]
