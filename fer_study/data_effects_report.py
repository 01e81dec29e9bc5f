"""FER2013's known data problems, measured on the study's own models, and the report section.

    python -m fer_study data-effects --data data/fer2013.csv --ferplus data/fer2013new.csv

measures on PrivateTest the leaderboard's selected and deployable models
(``reports/results/best_models.json``) and the shipped model: accuracy without the test faces
whose pixels also occur in Training, against the FER+ majority, where FER+ agrees with the
FER2013 label, and without FER+ non-faces (:func:`fer_study.data_effects.data_effects`); the
counts that need no model (:func:`fer_study.data_effects.data_counts`); and, once both runs are
trained, the effect of dropping the non-faces from Training (:data:`NONFACE_PAIR`). It writes
``reports/results/data_effects.json``; :func:`data_effects_section` renders it in the report.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np

from fer_study.assets import DEFAULT_KERAS_MODEL
from fer_study.data import Dataset, FerPlusVotes, load_dataset, load_ferplus
from fer_study.data_effects import REPORT, data_counts, data_effects
from fer_study.errors import ConfigError
from fer_study.evaluate import TTA_MODES, predict_probs
from fer_study.markdown import fmt, md_table
from fer_study.provenance import repo_relative, stamp, write_json
from fer_study.results import project_path
from fer_study.runs import runs_command
from fer_study.stats import mcnemar, verdict

NAME = "data_effects"
DEFAULT_OUTPUT = f"reports/results/{NAME}.json"
LEADERBOARD = "reports/results/best_models.json"
# Two committed runs (configs/runs/) that differ only in dropping FER+ non-faces from Training,
# at the ablation's reduced budget (width 16, 30 epochs): the first is the ablation's reference.
NONFACE_PAIR = ("runs/vgg_style_w16_e30_float32_s0",
                "runs/vgg_style_w16_e30_nonfacesdropped_s0")
TITLE = "Data effects: leaked test faces, FER+ labels, non-faces"


def model_specs(board: Mapping | None, shipped: bool = True) -> list[dict]:
    """What to measure: the leaderboard's selected and deployable candidates (their runs'
    best checkpoints, their TTA) and the shipped model as the pipeline runs it (no TTA: its
    flip is inside the model)."""
    specs = []
    if board:
        runs = board.get("runs") or {}

        def files(names: Sequence[str]) -> list[str]:
            missing = [n for n in names if n not in runs]
            if missing:
                raise ConfigError(f"the leaderboard names runs it does not describe: {missing}")
            return [f"{runs[n]['run_dir']}/best.keras" for n in names]

        specs.append({"role": "selected", "name": board["selected"],
                      "tta": board["selected_tta"], "models": files(board["selected_runs"])})
        dep = board.get("deployable")
        if dep and (dep["name"], dep["tta"]) != (board["selected"], board["selected_tta"]):
            specs.append({"role": "deployable", "name": dep["name"], "tta": dep["tta"],
                          "models": files(dep["runs"])})
    if shipped:
        specs.append({"role": "shipped", "name": "default_model", "tta": "none",
                      "models": [repo_relative(DEFAULT_KERAS_MODEL)]})
    return specs


def predict_labels(models: Sequence[str], tta: str, images: np.ndarray) -> np.ndarray:
    """Predicted labels of the mean probabilities of `models` (.keras files) under `tta`."""
    from fer_study.models import load_model

    if tta not in TTA_MODES:
        raise ConfigError(f"unknown TTA mode {tta!r}; choose from {TTA_MODES}")
    probs = [predict_probs(load_model(project_path(m)), images, tta=tta) for m in models]
    return np.mean(probs, axis=0).argmax(axis=1)


def nonface_effect(ds: Dataset, votes: FerPlusVotes | None,
                   pair: Sequence[str] = NONFACE_PAIR, split: str = REPORT) -> dict:
    """The two runs of `pair` (non-faces kept, dropped) on `split`, or "not run yet"."""
    base = {"runs": list(pair), "command": runs_command(pair)}
    missing = [r for r in pair if not (project_path(r) / "metrics.json").is_file()]
    if missing:
        return {**base, "status": "not run yet", "missing": missing}
    images, y = ds.split(split)
    arms, preds = {}, {}
    for arm, run in zip(("kept", "dropped"), pair):
        cfg = json.loads((project_path(run) / "config.json").read_text())
        met = json.loads((project_path(run) / "metrics.json").read_text())
        tta = cfg.get("tta", "none")
        preds[arm] = predict_labels([f"{run}/best.keras"], tta, images)
        data = met.get("data") or {}
        arms[arm] = {"run": run, "tta": tta,
                     "training_images": (data.get("split_sizes") or {}).get("Training"),
                     "training_nonfaces_dropped": data.get("training_nonfaces_dropped", 0),
                     "effects": data_effects(ds, preds[arm], votes, split)}
    t = mcnemar(y, preds["dropped"], preds["kept"])
    acc = {arm: arms[arm]["effects"]["all"]["accuracy"] for arm in arms}
    diff = acc["dropped"] - acc["kept"]
    return {**base, "status": "ok", **arms, "difference_points": round(100 * diff, 2),
            "mcnemar": {**t, "verdict": verdict(t["p_value"])}}


def measure(data: str, ferplus: str | None = None, leaderboard: str | None = LEADERBOARD,
            shipped: bool = True, nonface_pair: Sequence[str] = NONFACE_PAIR,
            progress: bool = True) -> dict:
    """The data-effects results (see the module doc)."""
    from tqdm import tqdm  # tqdm.auto warns in notebooks without ipywidgets

    ds = load_dataset(data)
    votes = load_ferplus(ferplus) if ferplus else None
    board = None
    if leaderboard and project_path(leaderboard).is_file():
        board = json.loads(project_path(leaderboard).read_text())
        want, got = ds.provenance().get("sha256"), (board.get("data") or {}).get("sha256")
        if want and got and want != got:
            raise ConfigError(f"{leaderboard} was made on other data (sha256 {got[:12]}) than "
                              f"{data} ({want[:12]})")
    images = ds.split(REPORT)[0]
    models = []
    for spec in tqdm(model_specs(board, shipped), desc="models", disable=not progress):
        preds = predict_labels(spec["models"], spec["tta"], images)
        models.append({**spec, "effects": data_effects(ds, preds, votes)})
    return {
        "title": TITLE, "status": "ok", "split": REPORT,
        "leaderboard": None if board is None else {
            "file": leaderboard, "selected": board.get("selected"),
            "created_utc": board.get("created_utc")},
        "counts": data_counts(ds, votes),
        "models": models,
        "nonface_drop": nonface_effect(ds, votes, nonface_pair) if votes is not None else {
            "runs": list(nonface_pair), "command": runs_command(nonface_pair),
            "status": "not measured: needs --ferplus"},
        "data": {**ds.provenance(), "path": repo_relative(data),
                 "ferplus_path": repo_relative(ferplus) if ferplus else None,
                 "ferplus_sha256": votes.sha256 if votes is not None else None},
        **stamp(),
    }


# --------------------------------------------------------------------------- report


def _cell(a: Mapping | None) -> str:
    """An accuracy with its interval and count: 0.7055 [0.69, 0.72] (n=3,589)."""
    if not a or a.get("accuracy") is None:
        return "—"
    ci = a.get("ci95") or [None, None]
    return f"{fmt(a['accuracy'])} [{fmt(ci[0])}, {fmt(ci[1])}] (n={fmt(a['n'])})"


def effects_rows(res: Mapping) -> list[dict]:
    """One row per measured model: PrivateTest accuracy under each data effect."""
    rows = []
    for m in res.get("models") or []:
        e = m["effects"]
        fp = e.get("ferplus") or {}
        rows.append({
            "model": f"{m['name']} ({m['role']})", "TTA": m["tta"],
            "all faces": _cell(e["all"]),
            "without faces also in Training": _cell(e["leakage"]["without_them"]),
            "on those faces": _cell(e["leakage"]["on_them"]),
            "vs FER+ majority": _cell(fp.get("against_ferplus_majority")),
            "where FER+ agrees with FER2013": _cell(fp.get("where_ferplus_agrees_with_fer2013")),
            "where FER+ disagrees": _cell(fp.get("where_ferplus_disagrees")),
            "without FER+ non-faces": _cell(fp.get("without_nonfaces")),
            "on FER+ non-faces": _cell(fp.get("on_nonfaces"))})
    return rows


def counts_lines(counts: Mapping | None) -> list[str]:
    """The model-free counts as sentences (also under notebook 01's results)."""
    if not counts:
        return []
    leaked = counts.get("leaked") or {}
    out = ["- Test faces whose exact pixels also occur in Training (distinct test images, not "
           "pairs): " + "; ".join(f"{s} {fmt(v['also_in_training'])} of "
                                  f"{fmt(v['test_images'])}" for s, v in leaked.items()) + "."]
    fp = counts.get("ferplus")
    if fp:
        out.append("- FER+ majority agrees with the FER2013 label: " + "; ".join(
            f"{s} {fmt(v['agreement'])} ({fmt(v['agreeing'])} of "
            f"{fmt(v['rows_with_ferplus_label'])})" for s, v in fp["agreement"].items()) + ".")
        out.append("- FER+ non-faces (no image name in FER+, or \"NF\" the top vote): " + "; ".join(
            f"{s} {fmt(v['nonfaces'])} ({fmt(v['no_image_name'])} unnamed, "
            f"{fmt(v['nf_top_vote'])} NF on top)" for s, v in fp["nonfaces"].items()) + ".")
    else:
        out.append("- FER+ votes were not given: no agreement or non-face counts.")
    return out


def nonface_lines(nf: Mapping | None) -> list[str]:
    """The effect of dropping FER+ non-faces from Training, or the command that measures it."""
    if not nf:
        nf = {"runs": list(NONFACE_PAIR), "command": runs_command(NONFACE_PAIR),
              "status": "not run yet"}
    head = (f"**Dropping FER+ non-faces from Training** (`{nf['runs'][0]}` keeps them, "
            f"`{nf['runs'][1]}` drops them; otherwise the same recipe, width 16, "
            "30 epochs, one seed each): ")
    if nf.get("status") != "ok":
        return [head + f"{nf.get('status')}. Train the two runs with `{nf['command']}`, then "
                "re-run `python -m fer_study data-effects`.", ""]
    kept, dropped, t = nf["kept"], nf["dropped"], nf["mcnemar"]
    return [head + f"{fmt(dropped['training_nonfaces_dropped'])} Training rows dropped; "
            f"{REPORT} accuracy {_cell(kept['effects']['all'])} with them, "
            f"{_cell(dropped['effects']['all'])} without them, a difference of "
            f"{nf['difference_points']:+.2f} points (McNemar p = {fmt(t['p_value'])}: "
            f"{t['verdict']}).", ""]


def data_effects_section(res: Mapping | None, selected_now: str | None = None) -> list[str]:
    """The report's "Data effects" section from ``results/data_effects.json`` (or how to make
    it). `selected_now`: the leaderboard's current pick, to flag a measurement of an older one."""
    out = ["## Data effects (FER2013's known problems, measured)", ""]
    cmd = ("python -m fer_study data-effects --data data/fer2013.csv "
           "--ferplus data/fer2013new.csv")
    if not res:
        return out + [f"Not run yet: `{cmd}` measures them.", "", *nonface_lines(None)]
    out += counts_lines(res.get("counts")) + [""]
    rows = effects_rows(res)
    if rows:
        out += [f"**{res.get('split', REPORT)} accuracy under each data effect** (95% bootstrap "
                "interval, number of faces). \"Without faces also in Training\" is what a "
                "leak-free test split would give; \"vs FER+ majority\" scores the same "
                "predictions against the crowd's label instead of FER2013's; the agree / "
                "disagree columns split the faces by whether the two labels match:", "",
                md_table(rows), ""]
    board = res.get("leaderboard") or {}
    if selected_now and board.get("selected") and board["selected"] != selected_now:
        out += [f"> These models are the leaderboard's of {board.get('created_utc')} (selected "
                f"`{board['selected']}`); it now selects `{selected_now}`: re-run `{cmd}`.", ""]
    out += nonface_lines(res.get("nonface_drop"))
    out += [f"_Source: `results/{NAME}.json`, made by `{res.get('command') or cmd}`._", ""]
    return out


# --------------------------------------------------------------------------- command


def _cmd(args) -> int:
    res = measure(args.data, args.ferplus, None if args.no_leaderboard else args.leaderboard,
                  shipped=not args.no_shipped)
    # the command as it re-makes the file, with paths inside the repository made relative
    res["command"] = " ".join(
        ["python -m fer_study data-effects --data", repo_relative(args.data)]
        + (["--ferplus", repo_relative(args.ferplus)] if args.ferplus else [])
        + (["--no-leaderboard"] if args.no_leaderboard else
           [] if args.leaderboard == LEADERBOARD else ["--leaderboard", args.leaderboard])
        + (["--no-shipped"] if args.no_shipped else [])
        + ([] if args.output == DEFAULT_OUTPUT else ["--output", repo_relative(args.output)]))
    path = write_json(args.output, res)
    for m in res["models"]:
        e = m["effects"]
        print(f"{m['name']} ({m['role']}, {m['tta']}): {REPORT} {fmt(e['all']['accuracy'])}, "
              f"without leaked faces {fmt(e['leakage']['without_them']['accuracy'])}")
    print(f"non-faces dropped from Training: {res['nonface_drop']['status']}; wrote {path}")
    return 0


def add_data_effects_subcommand(sub) -> None:
    p = sub.add_parser("data-effects", help="measure leaked test faces, FER+ labels and "
                                            "non-faces on the study's models; write their JSON")
    p.add_argument("--data", required=True, help="the FER2013 csv")
    p.add_argument("--ferplus", help="FER+ votes (fer2013new.csv): label and non-face effects")
    p.add_argument("--leaderboard", default=LEADERBOARD,
                   help=f"its selected and deployable models are measured (default {LEADERBOARD})")
    p.add_argument("--no-leaderboard", action="store_true", help="leave the runs out")
    p.add_argument("--no-shipped", action="store_true", help="leave the shipped model out")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help=f"default {DEFAULT_OUTPUT}")
    p.set_defaults(func=_cmd)
