"""Planning a study: the stages a profile runs, in order, with their injected parameters.

Stages are the notebooks in ``notebooks/`` (03 once per transfer backbone), run in name order
with the parameters of a profile (:mod:`fer_study.profiles`), then ``-p`` overrides. Only the
parameters a notebook declares in its ``parameters`` cell are passed to it.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fer_study.errors import ConfigError
from fer_study.profiles import Profile, get_profile
from fer_study.results import (
    BASELINE_MODEL,
    COMPARISON,
    NOTEBOOK_DIR,
    STAGES,
    TRANSFER,
    stage_name,
)

# The parameters every study notebook declares, in this order (see fer_study.notebook).
COMMON_PARAMS = ("profile", "data", "ferplus", "synthetic_sizes", "runs_dir", "reports_dir",
                 "seed")


@dataclass
class Stage:
    """One notebook execution."""

    name: str  # results / output notebook stem, e.g. 03_transfer_learning__vgg16
    notebook: Path
    params: dict  # injected by papermill
    reads: tuple[str, ...] = ()  # notebooks whose results (all their stages') it reads
    dropped: list[str] = field(default_factory=list)  # profile keys the notebook lacks


def notebook_parameters(path: Path) -> dict[str, Any]:
    """The parameters a notebook declares in its `parameters` cell (name -> default repr)."""
    import papermill as pm

    return {k: v.get("default") for k, v in pm.inspect_notebook(str(path)).items()}


def parse_overrides(items: Sequence[str] | None) -> list[tuple[str | None, str, Any]]:
    """`-p KEY=VALUE` / `-p STAGE:KEY=VALUE` -> (stage selector or None, key, value).
    Values are JSON where they parse (numbers, true, null, lists, dicts), else strings."""
    out = []
    for item in items or []:
        head, sep, value = item.partition("=")
        if not sep or not head:
            raise ConfigError(f"-p expects KEY=VALUE or STAGE:KEY=VALUE, got {item!r}")
        scope, _, key = head.rpartition(":")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.append((scope or None, key.strip(), parsed))
    return out


def _matches(stage: str, selector: str) -> bool:
    """`--only` / scoped `-p` selectors: a stage name, a prefix ('03', '03_transfer_learning')
    or a backbone ('vgg16' for 03_transfer_learning__vgg16)."""
    return (stage == selector or stage.startswith(selector + "_")
            or (selector.isdigit() and stage.startswith(selector))
            or stage.partition("__")[2] == selector)


def plan_study(profile: str | Profile = "demo", data: str = "synthetic",
               ferplus: str | None = None, runs_dir: str | None = None,
               reports_dir: str | None = None, overrides: Sequence[str] | None = None,
               only: Sequence[str] | None = None,
               notebooks_dir: str | os.PathLike | None = None) -> list[Stage]:
    """The stages to run, each with its injected parameters, in order. `runs_dir` and
    `reports_dir` default to the profile's (the demo writes to reports/demo)."""
    prof = get_profile(profile)
    name = prof.name
    reports_dir = reports_dir or prof.reports_dir
    if prof.requires_real_data and str(data) == "synthetic":
        raise ConfigError(
            f"profile {name!r} trains on the real FER2013 and refuses the synthetic demo set: "
            f"give --data path/to/fer2013.csv (make study PROFILE={name} "
            f"DATA=path/to/fer2013.csv; see data/README.md). For the synthetic demo use "
            f"--profile demo.")
    nb_dir = Path(notebooks_dir) if notebooks_dir else NOTEBOOK_DIR
    common = {"profile": name, "data": str(data), "ferplus": ferplus,
              "runs_dir": runs_dir or prof.default_runs_dir,
              "reports_dir": str(reports_dir), "seed": 0, **prof.params}
    stages: list[Stage] = []
    for nb_name in sorted(prof.notebooks):
        param, values = prof.repeat.get(nb_name, (None, {None: {}}))
        for value, extra in values.items():
            # a deep copy: a stage's parameters never alias the (frozen) profile's values
            params = copy.deepcopy({**common, **prof.notebooks[nb_name], **extra})
            if param:
                params[param] = value
            if nb_name == COMPARISON and TRANSFER in prof.notebooks:
                backbones = list(prof.repeat.get(TRANSFER, (None, {}))[1])
                params.setdefault("models", [BASELINE_MODEL, *backbones])
            spec = STAGES.get(nb_name)
            stages.append(Stage(stage_name(nb_name, value), nb_dir / f"{nb_name}.ipynb", params,
                                spec.reads if spec else ()))
    all_names = [s.name for s in stages]
    if only:
        unknown = [o for o in only if not any(_matches(s, o) for s in all_names)]
        if unknown:
            raise ConfigError(f"--only {' '.join(unknown)}: no such stage; stages are "
                             f"{', '.join(all_names)}")
        stages = [s for s in stages if any(_matches(s.name, o) for o in only)]
    missing = [str(s.notebook) for s in stages if not s.notebook.is_file()]
    if missing:
        raise ConfigError(f"notebook(s) not found: {', '.join(missing)}")
    _apply_parameters(stages, parse_overrides(overrides))
    return stages


def _apply_parameters(stages: list[Stage], overrides: list[tuple[str | None, str, Any]]
                      ) -> None:
    """Keep the parameters each notebook declares; apply -p overrides where declared."""
    declared = {s.name: set(notebook_parameters(s.notebook)) for s in stages}
    for s in stages:
        s.dropped = sorted(k for k in s.params if k not in declared[s.name]
                           and k not in COMMON_PARAMS)
        s.params = {k: v for k, v in s.params.items() if k in declared[s.name]}
    for scope, key, value in overrides:
        hit = [s for s in stages if (scope is None or _matches(s.name, scope))
               and key in declared[s.name]]
        if not hit:
            where = f"stage(s) matching {scope!r}" if scope else "any selected notebook"
            raise ConfigError(f"-p {key}=...: {where} has no parameter {key!r}")
        for s in hit:
            s.params[key] = value
