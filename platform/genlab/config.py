"""Turn YAML files and ``--set`` overrides into validated specs (the models are in :mod:`genlab.specs`).

A run, sweep or expert spec file is read, its ``--set a.b=value`` overrides are applied to the raw YAML, a
``ppo: {base: <file>}`` section is resolved to its values, and then all of it goes through the same validation;
all errors of a file are reported together in one :class:`SpecError`.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from genlab.errors import SpecError, format_errors
from genlab.rl.hparams import PPOHparams
from genlab.specs import ExpertSpec, RunSpec, set_path
from genlab.sweep_specs import SweepSpec


def parse_override(item: str) -> tuple[str, Any]:
    """``'hparams.lr=1e-3'`` -> ``('hparams.lr', 0.001)``; the value is read as YAML."""
    if "=" not in item:
        raise SpecError(f"--set {item!r}: expected KEY=VALUE, e.g. --set hparams.lr=1e-3")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise SpecError(f"--set {item!r}: the key must be a dotted path such as hparams.lr")
    return key, _yaml_value(text)


def _yaml_value(text: str) -> Any:
    value = yaml.safe_load(text) if text.strip() else ""
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string; users mean a number
        try:
            f = float(value)
            if math.isfinite(f):
                return f
        except ValueError:
            pass
    return value


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"{p}: no such spec file")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{p}: a spec must be a mapping of keys to values, got {type(raw).__name__}")
    return raw


def run_raw(run: str | dict, base_dir: Path, field: str = "ppo") -> dict:
    """A run spec as a raw mapping, not yet validated: ``run`` names a run spec file (relative to ``base_dir``) or is
    the mapping itself; its ``ppo.base`` is resolved (relative to the file that names it)."""
    if isinstance(run, str):
        run_file = base_dir / run
        return _resolve_ppo_base(read_yaml(run_file), run_file.parent, field)
    return _resolve_ppo_base(copy.deepcopy(run), base_dir, field)


def _resolve_run_file(raw: dict, base_dir: Path) -> dict:
    """A sweep's ``run:`` may name a run spec file (relative to the sweep file) instead of inlining it; that file's
    own ``ppo.base`` is then relative to it."""
    if isinstance(raw.get("run"), str):
        raw = {**raw, "run": run_raw(raw["run"], base_dir, "run.ppo")}
    return raw


def _resolve_ppo_base(raw: dict, base_dir: Path, field: str = "ppo") -> dict:
    """Merge ``ppo: {base: <file>, ...}``: the file's PPO settings (relative to ``base_dir``; it may name a base of
    its own), overridden by the section's other keys. The resolved spec has no ``base``: only the values."""
    section = raw.get("ppo")
    if not (isinstance(section, dict) and "base" in section):
        return raw
    merged = _ppo_base_values(section, base_dir, field)
    return {**raw, "ppo": merged}


def _ppo_base_values(section: dict, base_dir: Path, field: str, depth: int = 0) -> dict:
    rest = {k: v for k, v in section.items() if k != "base"}
    if "base" not in section:
        return rest
    if depth > 8:
        raise SpecError(f"{field}.base: the chain of base files is longer than 8; is it a loop?")
    path = base_dir / str(section["base"])
    if not path.is_file():
        raise SpecError(f"{field}.base: no such file {path} (a base is relative to the file that names it; "
                        "the shared PPO settings are in sweeps/ppo/)")
    base = _ppo_base_values(read_yaml(path), path.parent, f"{field}.base", depth + 1)
    unknown = sorted(set(base) - set(PPOHparams.model_fields))
    if unknown:
        raise SpecError(f"{field}.base: {path}: unknown key {unknown[0]!r}; allowed: "
                        + ", ".join(PPOHparams.model_fields))
    return {**base, **rest}


def is_sweep(raw: dict) -> bool:
    return "search_space" in raw


def is_expert(raw: dict) -> bool:
    return "target_return" in raw


def load_run(path: str | Path, overrides: list[str] = ()) -> RunSpec:
    return _validate(RunSpec, read_yaml(path), overrides, str(path), base_dir=Path(path).parent)


def load_sweep(path: str | Path, overrides: list[str] = ()) -> SweepSpec:
    raw = _resolve_run_file(read_yaml(path), Path(path).parent)
    return _validate(SweepSpec, raw, overrides, str(path), base_dir=Path(path).parent)

def load_expert(path: str | Path, overrides: list[str] = ()) -> ExpertSpec:
    return _validate(ExpertSpec, read_yaml(path), overrides, str(path), base_dir=Path(path).parent)


def load_any(path: str | Path, overrides: list[str] = ()) -> RunSpec | SweepSpec | ExpertSpec:
    """A run, sweep or expert spec, told apart by its keys (search_space, target_return)."""
    raw = read_yaml(path)
    if is_sweep(raw):
        return load_sweep(path, overrides)
    if is_expert(raw):
        return load_expert(path, overrides)
    return load_run(path, overrides)


def run_from_dict(raw: dict, source: str = "run spec") -> RunSpec:
    return _validate(RunSpec, raw, (), source)


def apply_overrides(raw: dict, overrides, source: str) -> dict:
    """A copy of ``raw`` with ``--set KEY=VALUE`` overrides applied (their errors name the override)."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, value = parse_override(item)
        try:
            set_path(raw, key, value)
        except KeyError as e:
            raise SpecError(f"{source}: --set {item}: {e.args[0]}") from None
    return raw


def validate(model: type[BaseModel], raw: dict, *, source: str, kind: str, prepare=None):
    """``model`` validated from ``raw``, or one :class:`SpecError` headed ``<source>: invalid <kind>:`` listing every
    problem, one indented line each (pydantic's errors and genlab's own checks alike). ``prepare(raw)`` may resolve
    parts of the mapping first; its SpecError is reported the same way."""
    try:
        return model.model_validate(prepare(raw) if prepare else raw)
    except ValidationError as e:
        lines = format_errors(e, model=model)
    except SpecError as e:
        lines = str(e).splitlines()
    raise SpecError(f"{source}: invalid {kind}:\n" + "\n".join(f"  {line}" for line in lines))


def _validate(model: type[BaseModel], raw: dict, overrides, source: str, base_dir: Path | None = None):
    def resolve_ppo_bases(raw: dict) -> dict:  # a file's ppo.base (a sweep's run file resolved its own already)
        raw = _resolve_ppo_base(raw, base_dir)
        if isinstance(raw.get("run"), dict):
            raw["run"] = _resolve_ppo_base(raw["run"], base_dir, "run.ppo")
        return raw

    kind = {RunSpec: "run spec", SweepSpec: "sweep spec", ExpertSpec: "expert spec"}[model]
    return validate(model, apply_overrides(raw, overrides, source), source=source, kind=kind,
                    prepare=resolve_ppo_bases if base_dir is not None else None)
