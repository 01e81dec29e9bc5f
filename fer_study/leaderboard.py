"""The best-model table: finished runs (and small ensembles of them) under each test-time
augmentation, one selection on PublicTest, PrivateTest reported.

    python -m fer_study leaderboard RUN_DIR [RUN_DIR ...] --data fer2013.csv \
        [--ensemble NAME=RUN_DIR,RUN_DIR] [--output reports/results/best_models.json]

Every candidate (run or ensemble x TTA mode) is scored on PublicTest and PrivateTest from each
run's best-on-PublicTest checkpoint; the *selected* candidate is the one with the highest
PublicTest accuracy, so choosing among recipes, TTA modes and ensembles never looks at
PrivateTest. Runs that share a recipe (same config apart from the seed) are also summarised
as mean and spread over seeds. The JSON is what the report's and the README's best-model
tables are made from.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fer_study.comparison import LEARNED_MACRO_F1  # a run below it joins no ensemble
from fer_study.data import Dataset, load_dataset
from fer_study.errors import ConfigError, ModelError
from fer_study.evaluate import TTA_MODES, metrics_from_probs, predict_probs
from fer_study.labels import IMAGE_SIZE
from fer_study.provenance import stamp, write_json
from fer_study.report import split_names
from fer_study.run_config import EXECUTION_FIELDS, RunConfig
from fer_study.runs import runs_command
from fer_study.stats import METRICS, bootstrap_ci, mcnemar, paired_bootstrap, verdict
from fer_study.train import PRECISION_BEFORE_OPTION, reproduce_command

SELECT, REPORT = "PublicTest", "PrivateTest"
TITLE = "Best models (accuracy push)"
DEPLOYABLE_TTA = ("none", "flip")
DEPLOY_MAX_PASSES = 2
DEFAULT_OUTPUT = "reports/results/best_models.json"
DEPLOY_MAX_PARAMS = 500_000  # the shipped model's budget (~1 ms per face on one core)


@dataclass
class Candidate:
    name: str
    runs: list[str]
    tta: str
    probs: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (N, 7)


def _load_run(run_dir: Path) -> dict:
    for f in ("config.json", "metrics.json", "best.keras"):
        if not (run_dir / f).is_file():
            raise ModelError(f"{run_dir} is not a finished run folder (no {f})")
    cfg = json.loads((run_dir / "config.json").read_text())
    met = json.loads((run_dir / "metrics.json").read_text())
    return {"dir": run_dir, "name": run_dir.name, "config": cfg, "metrics": met}


# Where and how a run executed, not what it computed (one device: these change nothing).
_NOT_RECIPE = ("seed", "run_dir", "verbose", *EXECUTION_FIELDS, "scale_by_replicas",
               "sync_batch_norm")


def recipe_key(cfg: Mapping, precision: str | None = None) -> str:
    """Configs that differ only by seed / run folder / verbosity / where they ran are one
    recipe. A field missing from an older config counts as its default, which reproduces the
    behaviour from before the field existed; `precision` is what the run trained in (its
    metrics), since "auto" leaves that to the machine and older runs recorded none."""
    ran = precision or cfg.get("precision", PRECISION_BEFORE_OPTION)
    full = {**asdict(RunConfig()), **cfg, "precision": ran}
    return json.dumps({k: v for k, v in full.items() if k not in _NOT_RECIPE},
                      sort_keys=True, default=str)


def _row(c: Candidate, runs: Mapping[str, dict], ds: Dataset, selected: bool) -> dict:
    members = [runs[r] for r in c.runs]
    y_rep = ds.split(REPORT)[1]
    rep = metrics_from_probs(c.probs[REPORT], y_rep)
    sel_acc = float((c.probs[SELECT].argmax(1) == ds.split(SELECT)[1]).mean())
    acc_ci = bootstrap_ci(y_rep, c.probs[REPORT].argmax(1), "accuracy")
    f1_ci = bootstrap_ci(y_rep, c.probs[REPORT].argmax(1), "macro_f1", n_boot=300)
    hw = members[0]["metrics"].get("hardware") or {}
    return {
        "model": c.name + (" (selected)" if selected else ""),
        "runs": len(members),
        "architecture": " + ".join(sorted({m["config"]["model"] for m in members})),
        "TTA": c.tta,
        f"{SELECT} acc": sel_acc,
        f"{REPORT} acc": rep["accuracy"],
        f"{REPORT} macro-F1": rep["macro_f1"],
        f"{REPORT} acc 95% CI": [round(acc_ci["low"], 4), round(acc_ci["high"], 4)],
        f"{REPORT} macro-F1 95% CI": [round(f1_ci["low"], 4), round(f1_ci["high"], 4)],
        "Disgust recall": rep["per_class"]["Disgust"]["recall"],
        "params": sum(int(m["metrics"]["params"]["total"]) for m in members),
        "epochs": " + ".join(str(m["metrics"].get("epochs_run")) for m in members),
        "train time (min)": round(sum(m["metrics"].get("train_seconds", 0.0)
                                      for m in members) / 60, 1),
        "hardware": f"{hw.get('cpu', '?')} x{hw.get('cpu_count', '?')} "
                    f"({hw.get('keras_backend', '?')})",
    }


MIN_GAIN = 0.0025  # an ensemble member must add 0.25 points (~9 PublicTest faces): less is noise


def greedy_ensemble(probs: Mapping[str, np.ndarray], labels: np.ndarray,
                    min_gain: float = MIN_GAIN) -> list[str]:
    """Forward selection (Caruana et al. 2004) on the selection split: start from the best
    run, add the run that most improves the mean's accuracy, stop when none adds `min_gain`.
    Runs that did not learn (macro-F1 under 0.10) are never added: averaging in a near-constant
    predictor can flip a few close calls on PublicTest, a gain that is noise."""
    def acc(members: list[str]) -> float:
        return float((np.mean([probs[m] for m in members], 0).argmax(1) == labels).mean())

    usable = [n for n in sorted(probs)
              if METRICS["macro_f1"](labels, probs[n].argmax(1)) >= LEARNED_MACRO_F1]
    chosen = [max(usable or sorted(probs), key=lambda n: acc([n]))]
    while True:
        rest = [n for n in usable if n not in chosen]
        if not rest:
            return chosen
        nxt = max(rest, key=lambda n: acc([*chosen, n]))
        if acc([*chosen, nxt]) < acc(chosen) + min_gain:
            return chosen
        chosen.append(nxt)


def _recipe_name(members: Sequence[str], model: str) -> str:
    """A recipe's name for people: its runs' shared name without the seed suffix
    (vgg_style_w32_s0, _s1 -> vgg_style_w32), else its model."""
    return re.sub(r"_?s?$", "", os.path.commonprefix(list(members))) or model


def build_leaderboard(run_dirs: Sequence[str | Path], data: str | Dataset,
                      ensembles: Mapping[str, Sequence[str]] | None = None,
                      ttas: Sequence[str] = TTA_MODES, progress: bool = True,
                      greedy: bool = False, reference: str | None = None) -> dict:
    """Score runs and ensembles under each TTA mode; select on PublicTest. See module doc."""
    from tqdm import tqdm  # tqdm.auto warns in notebooks without ipywidgets

    from fer_study.models import load_model

    runs = {}
    for d in run_dirs:
        r = _load_run(Path(d))
        if r["name"] in runs:
            raise ConfigError(f"two run folders are named {r['name']!r}; names must differ")
        runs[r["name"]] = r
    if not runs:
        raise ConfigError("give at least one run folder")
    ds = data if isinstance(data, Dataset) else load_dataset(data)
    want = ds.provenance().get("sha256")
    for n, r in runs.items():
        got = (r["metrics"].get("data") or {}).get("sha256")
        if want and got and got != want:
            raise ConfigError(f"run {n!r} was trained on different data (sha256 {got[:12]}) "
                             f"than {data} ({want[:12]})")
    missing = [s for s in (SELECT, REPORT) if s not in ds.splits]
    if missing:
        raise ConfigError(f"{data} has no {' / '.join(missing)} split: the leaderboard follows "
                         f"the fer2013.csv protocol (select on {SELECT}, report {REPORT})")
    for t in ttas:
        if t not in TTA_MODES:
            raise ConfigError(f"unknown TTA mode {t!r}; choose from {TTA_MODES}")
    ensembles = dict(ensembles or {})
    for name, members in ensembles.items():
        missing = [m for m in members if m not in runs]
        if missing or len(members) < 2:
            raise ConfigError(f"ensemble {name!r} needs 2+ of the given runs "
                             f"({sorted(runs)}); unknown: {missing}")
        if name in runs:
            raise ConfigError(f"ensemble name {name!r} is also a run name")

    def views(n: str) -> list[str]:
        # Ten-crop is flip for a model that sees the whole 48 px face (no crops to take).
        full = runs[n]["config"].get("input_size", IMAGE_SIZE) >= IMAGE_SIZE
        return [t for t in ttas if not (full and t == "tencrop" and "flip" in ttas)]

    probs: dict[tuple[str, str, str], np.ndarray] = {}
    todo = [(n, t, s) for n in runs for t in views(n) for s in (SELECT, REPORT)]
    models: dict[str, Any] = {}
    for n, t, s in tqdm(todo, desc="predicting", disable=not progress):
        if n not in models:
            models[n] = load_model(runs[n]["dir"] / "best.keras")
        probs[(n, t, s)] = predict_probs(models[n], ds.split(s)[0], tta=t)
    for n in runs:  # a full-size model's ten-crop candidate is its flip one, scored once
        for t in set(ttas) - set(views(n)):
            for s in (SELECT, REPORT):
                probs[(n, t, s)] = probs[(n, "flip", s)]
    cands = [Candidate(n, [n], t, {s: probs[(n, t, s)] for s in (SELECT, REPORT)})
             for n in runs for t in views(n)]
    for name, members in ensembles.items():
        for t in ttas:
            cands.append(Candidate(name, list(members), t, {
                s: np.mean([probs[(m, t, s)] for m in members], axis=0)
                for s in (SELECT, REPORT)}))

    y_sel = ds.split(SELECT)[1]
    if greedy and len(runs) > 1:
        for t in ttas:
            members = greedy_ensemble({n: probs[(n, t, SELECT)] for n in runs}, y_sel)
            if len(members) > 1:
                name = f"greedy_{t}"
                ensembles[name] = members
                cands.append(Candidate(name, members, t, {
                    s: np.mean([probs[(m, t, s)] for m in members], axis=0)
                    for s in (SELECT, REPORT)}))
    cost = {t: i for i, t in enumerate(TTA_MODES)}

    def rank(c: Candidate) -> tuple:
        # Highest PublicTest accuracy; ties go to the cheaper one (fewer runs, fewer views).
        return float((c.probs[SELECT].argmax(1) == y_sel).mean()), -len(c.runs), -cost[c.tta]

    best = max(cands, key=rank)
    rows = [_row(c, runs, ds, c is best) for c in cands]
    # For the real-time pipeline: the best candidate that fits one model call of at most
    # DEPLOY_MAX_PASSES network passes per face (runs x views: flip is two views, ten-crop
    # ten), which keeps the classifier near the 1 ms per face budget on one CPU core.
    params = {n: int(r["metrics"]["params"]["total"]) for n, r in runs.items()}
    live = [c for c in cands if c.tta in DEPLOYABLE_TTA
            and len(c.runs) * (2 if c.tta == "flip" else 1) <= DEPLOY_MAX_PASSES
            and sum(params[r] for r in c.runs) <= DEPLOY_MAX_PARAMS]
    deploy = max(live, key=rank) if live else None
    y_rep = ds.split(REPORT)[1]
    pairs = []
    singles = [c for c in cands if len(c.runs) == 1 and c.tta == best.tta]
    best_single = max(singles, key=rank) if singles else None
    for label, other in (("deployable", deploy), ("best single run", best_single)):
        if other is None or other is best:
            continue
        t = mcnemar(y_rep, best.probs[REPORT].argmax(1), other.probs[REPORT].argmax(1))
        pairs.append({"a": f"{best.name} ({best.tta})", "b": f"{other.name} ({other.tta})",
                      "b_is": label, **t, "verdict": verdict(t["p_value"])})

    seeds = []
    groups: dict[str, list[str]] = {}
    for n, r in runs.items():
        groups.setdefault(recipe_key(r["config"], r["metrics"].get("precision")), []).append(n)
    for members in groups.values():
        if len(members) < 2:
            continue
        for t in ttas:
            accs = {s: [float((probs[(m, t, s)].argmax(1) == ds.split(s)[1]).mean())
                        for m in members] for s in (SELECT, REPORT)}
            seeds.append({"recipe": _recipe_name(members, runs[members[0]]["config"]["model"]),
                          "runs": ", ".join(members),
                          "TTA": t,
                          **{f"{s} acc mean": statistics.mean(a) for s, a in accs.items()},
                          **{f"{s} acc sd": statistics.stdev(a) for s, a in accs.items()}})

    ref_tests = _reference_tests(reference, cands, ds) if reference else []
    best_row = next(r for r in rows if r["model"].endswith("(selected)"))
    # The best single network (any TTA): what notebooks 05-07 analyse as "the selected model"
    # (an ensemble has no one Grad-CAM or TFLite file).
    one = max((c for c in cands if len(c.runs) == 1), key=rank)
    return {
        "title": TITLE,
        "status": "ok",
        "selection": f"highest {SELECT} accuracy over runs, ensembles and TTA modes; "
                     f"{REPORT} is reported, never used to choose",
        "selected": best.name, "selected_tta": best.tta,
        "selected_runs": best.runs,
        "best_single": {"run": one.name, "tta": one.tta, "run_dir": str(runs[one.name]["dir"]),
                        f"{SELECT.lower()}_accuracy": rank(one)[0]},
        f"selected_{SELECT.lower()}_accuracy": best_row[f"{SELECT} acc"],
        f"selected_{REPORT.lower()}_accuracy": best_row[f"{REPORT} acc"],
        f"selected_{REPORT.lower()}_macro_f1": best_row[f"{REPORT} macro-F1"],
        "selected_disgust_recall": best_row["Disgust recall"],
        "deployable": None if deploy is None else {
            "name": deploy.name, "tta": deploy.tta, "runs": deploy.runs,
            "rule": f"best {SELECT} accuracy with TTA in {DEPLOYABLE_TTA}, at most "
                    f"{DEPLOY_MAX_PASSES} network passes per face and at most "
                    f"{DEPLOY_MAX_PARAMS:,} parameters",
            "ship_command": "python -m fer_study ship "
            + " ".join(str(runs[r]["dir"]) for r in deploy.runs) + " --data DATA"
            + (" --flip" if deploy.tta == "flip" else "")},
        f"{REPORT}_paired_tests": pairs,
        "reference": reference, "reference_tests": ref_tests,
        "summary_table": rows,
        "seed_table": seeds,
        "runs": {n: {"run_dir": str(r["dir"]), "config": r["config"],
                     "command": reproduce_command(r["config"]),
                     "epochs_run": r["metrics"].get("epochs_run"),
                     "best_epoch": r["metrics"].get("best_epoch"),
                     "train_seconds": r["metrics"].get("train_seconds"),
                     **_fit_accuracies(r["metrics"]),
                     "hardware": r["metrics"].get("hardware"),
                     "git": r["metrics"].get("git")} for n, r in runs.items()},
        "ensembles": {k: list(v) for k, v in ensembles.items()},
        "data": ds.provenance(),
        **stamp(),
    }


def _reference_tests(reference: str, cands: Sequence[Candidate], ds: Dataset) -> list[dict]:
    """An ablation table, one change at a time, on the same faces: every run against the
    reference run under the same TTA mode, and the reference's TTA modes against the
    reference without TTA. Accuracy differences with a paired bootstrap interval (both
    splits) and McNemar's test on PrivateTest."""
    refs = {c.tta: c for c in cands if c.runs == [reference]}
    if "none" not in refs:
        raise ConfigError(f"reference run {reference!r} is not among the runs, or 'none' is "
                          "not among the TTA modes")
    out = []
    for c in cands:
        if len(c.runs) != 1:
            continue
        base = refs["none"] if c.runs == [reference] else refs[c.tta]
        row: dict[str, Any] = {"run": c.name, "TTA": c.tta, "against": f"{reference} "
                               f"({base.tta})"}
        for s in (SELECT, REPORT):
            y = ds.split(s)[1]
            a, b = c.probs[s].argmax(1), base.probs[s].argmax(1)
            d = paired_bootstrap(y, a, b, n_boot=500)
            row[f"{s} acc"] = float((a == y).mean())
            row[f"{s} diff vs reference (points)"] = round(100 * d["difference"], 2)
            row[f"{s} diff 95% CI"] = [round(100 * d["low"], 2), round(100 * d["high"], 2)]
        if c is not base:
            t = mcnemar(ds.split(REPORT)[1], c.probs[REPORT].argmax(1),
                        base.probs[REPORT].argmax(1))
            row[f"{REPORT} McNemar p"] = t["p_value"]
            row["verdict"] = verdict(t["p_value"])
        out.append(row)
    return out


def _fit_accuracies(metrics: Mapping) -> dict:
    """Un-augmented Training accuracy (the run's fixed sample) beside its PublicTest accuracy
    at the selected epoch, no TTA: their gap says whether a recipe under- or over-fits."""
    fit, select, _ = split_names(metrics)  # the run's own protocol
    splits = metrics.get("splits") or {}
    train = (splits.get(fit) or {}).get("none") or {}
    public = (splits.get(select) or {}).get("none") or {}
    return {"training_accuracy": train.get("accuracy"), "training_accuracy_n": train.get("n"),
            "publictest_accuracy": public.get("accuracy")}


def _parse_ensembles(items: Sequence[str]) -> dict[str, list[str]]:
    out = {}
    for item in items or ():
        name, sep, members = item.partition("=")
        if not sep or not name or not members:
            raise ConfigError(f"--ensemble wants NAME=RUN,RUN (run folder names), got {item!r}")
        out[name] = [Path(m).name for m in members.split(",") if m]
    return out


SPEC_KEYS = {"data", "runs", "study_runs", "ensembles", "greedy", "tta", "output", "comment",
             "reference", "title"}


def read_spec(path: str | Path) -> dict:
    """A committed leaderboard spec: {"data", "runs", "study_runs", "ensembles", "greedy",
    "tta", "output"}. `runs` are the committed run configs' folders (`make runs`);
    `study_runs` the folders the real-data study's notebooks train (`make study PROFILE=cpu`).
    """
    spec = json.loads(Path(path).read_text())
    unknown = set(spec) - SPEC_KEYS
    if unknown or "runs" not in spec or "data" not in spec:
        raise ConfigError(f"{path}: a leaderboard spec needs 'data' and 'runs' and may have "
                         f"{sorted(SPEC_KEYS - {'data', 'runs'})}; unknown: {sorted(unknown)}")
    return spec


def leaderboard_from_spec(spec: str | Path | Mapping, data: str | Dataset | None = None,
                          extra_runs: Sequence[str | Path] = (), progress: bool = True) -> dict:
    """The leaderboard of a spec: its finished runs and study runs plus `extra_runs`
    (deduplicated). Runs not finished yet are listed under `runs_not_finished`, not scored.
    Notebook 04 and `make leaderboard` both come here, so they rank the same candidates."""
    spec = read_spec(spec) if not isinstance(spec, Mapping) else spec
    listed = [*spec["runs"], *spec.get("study_runs", [])]
    listed += [str(r) for r in extra_runs
               if Path(r).resolve() not in {Path(x).resolve() for x in listed}]
    runs = [r for r in listed if (Path(r) / "metrics.json").is_file()]
    missing = [r for r in listed if r not in runs]
    if missing and progress:
        print(f"not finished yet, left out: {', '.join(missing)}")
    done = {Path(r).name for r in runs}
    ensembles = {k: [Path(m).name for m in v] for k, v in spec.get("ensembles", {}).items()
                 if all(Path(m).name in done for m in v)}
    res = build_leaderboard(runs, data if data is not None else spec["data"], ensembles,
                            ttas=spec.get("tta") or TTA_MODES,
                            greedy=spec.get("greedy", False), progress=progress,
                            reference=spec.get("reference") if spec.get("reference") in done
                            else None)
    res["runs_not_finished"] = [
        {"run": r, "command": runs_command([r]) if r in spec["runs"]
         else "make study PROFILE=cpu DATA=" + str(spec["data"])} for r in missing]
    if spec.get("title"):  # a spec other than the best-model table (ablation, parity)
        res["title"] = spec["title"]
        res["comment"] = spec.get("comment")
        res["summary_tables"] = {k: v for k, v in (
            ("One change at a time, paired on the same faces (differences in points): each run "
             "against the reference under the same TTA, the reference's TTA against none",
             res.get("reference_tests")),
            ("Mean and spread over seeds (runs sharing a recipe)", res.get("seed_table")),
            ("Runs not trained yet", res["runs_not_finished"])) if v}
    return res


def _cmd(args) -> int:
    if args.spec:
        if args.runs:
            raise ConfigError("give run folders or --spec, not both")
        spec = read_spec(args.spec)
        listed = [*spec["runs"], *spec.get("study_runs", [])]
        if not any((Path(r) / "metrics.json").is_file() for r in listed):
            print(f"{args.spec}: no run has finished yet, nothing to score "
                  f"({runs_command(spec['runs'])})")
            return 0
        res = leaderboard_from_spec(spec, args.data)
        output = args.output or spec.get("output", DEFAULT_OUTPUT)
    else:
        if not args.runs or not args.data:
            raise ConfigError("give run folders and --data, or --spec")
        res = build_leaderboard(args.runs, args.data, _parse_ensembles(args.ensemble),
                                ttas=args.tta or TTA_MODES, greedy=args.greedy)
        res["runs_not_finished"] = []
        output = args.output or DEFAULT_OUTPUT
    res["command"] = "python -m fer_study leaderboard " + " ".join(sys.argv[2:]) \
        if sys.argv[1:2] == ["leaderboard"] else None
    path = write_json(output, res)
    print(f"selected on {SELECT}: {res['selected']} (tta {res['selected_tta']}): "
          f"{SELECT} {res[f'selected_{SELECT.lower()}_accuracy']:.4f}, "
          f"{REPORT} {res[f'selected_{REPORT.lower()}_accuracy']:.4f}; wrote {path}")
    return 0


def add_leaderboard_subcommand(sub) -> None:
    p = sub.add_parser("leaderboard", help="score finished runs and ensembles; select on "
                                           "PublicTest; write the best-model JSON")
    p.add_argument("runs", nargs="*", help="run folders (each with best.keras, metrics.json)")
    p.add_argument("--spec", help="a committed spec (configs/leaderboard.json) instead of "
                                  "run folders")
    p.add_argument("--data", help="the FER2013 csv the runs were trained on")
    p.add_argument("--greedy", action="store_true",
                   help="also a greedy ensemble per TTA mode, chosen on PublicTest")
    p.add_argument("--ensemble", action="append", metavar="NAME=RUN,RUN",
                   help="average the probabilities of these runs (folder names)")
    p.add_argument("--tta", action="append", choices=TTA_MODES,
                   help="TTA modes to score (default: all)")
    p.add_argument("--output", help=f"default {DEFAULT_OUTPUT}")
    p.set_defaults(func=_cmd)
