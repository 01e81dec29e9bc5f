"""Published FER2013 figures beside ours, and what comparisons with the `fer` package favour.

The published figures are citations, kept with their sources and protocols in
``fer_study/assets/published_results.json`` (not results of this repository). Our figures are
read from the results files: the leaderboard's selected, deployable and ensemble candidates
(``best_models.json``), the shipped model (``default_model.json``), the study's runs
(``04_model_comparison.json``) and our measurement of ``fer``'s model
(``benchmark_realtime.json``). A figure that has not been made yet is a "not run" row with the
command that makes it, never a number.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from fer_study.assets import ASSETS_DIR, DEFAULT_MODEL_META
from fer_study.markdown import fmt
from fer_study.results import BEST_MODELS, COMPARISON

PUBLISHED = ASSETS_DIR / "published_results.json"
OUR_PROTOCOL = "fit on Training, select on PublicTest, report PrivateTest once"
LEADERBOARD_COMMAND = "make runs && make leaderboard"


def load_published(path: str | os.PathLike | None = None) -> list[dict]:
    """The published entries (citations, not our results)."""
    return json.loads(Path(path or PUBLISHED).read_text())["entries"]


def _shipped_meta() -> dict | None:
    try:
        return json.loads(DEFAULT_MODEL_META.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _best_row(board: Mapping, name: str, tta: str) -> dict:
    for r in board.get("summary_table", []):
        if str(r["model"]).replace(" (selected)", "") == name and r.get("TTA") == tta:
            return r
    return {}


def _row_setup(row: Mapping, board: Mapping, runs: list[str]) -> str:
    cfgs = [((board.get("runs") or {}).get(r) or {}).get("config") or {} for r in runs]
    px = sorted({c.get("input_size") for c in cfgs if c.get("input_size")})
    return (f"{fmt(row.get('params'))} parameters, {row.get('epochs')} epochs, "
            f"{fmt(row.get('train time (min)'))} training minutes on {row.get('hardware')}"
            + (f", {'/'.join(map(str, px))} px crops of the 48 px faces" if px else ""))


def _seed_extra(board: Mapping, run: str, tta: str | None) -> str | None:
    """The mean and spread over the seeds of `run`'s recipe, when it has several."""
    seed = next((s for s in board.get("seed_table", []) if s.get("TTA") == tta
                 and run in str(s.get("runs", "")).split(", ")), None)
    return (f"mean over seeds ({seed['runs']}): {fmt(seed.get('PrivateTest acc mean'))} "
            f"± {fmt(seed.get('PrivateTest acc sd'))}") if seed else None


def _leaderboard_figures(board: Mapping) -> dict[str, dict]:
    out: dict[str, dict] = {}
    sel, tta = board.get("selected"), board.get("selected_tta")
    row = _best_row(board, sel, tta)
    out["selected"] = {
        "label": f"`{sel}` ({tta}), selected", "accuracy": board.get(
            "selected_privatetest_accuracy"), "ci": row.get("PrivateTest acc 95% CI"),
        "publictest": board.get("selected_publictest_accuracy"),
        "setup": _row_setup(row, board, board.get("selected_runs") or [sel]),
        "extra": _seed_extra(board, sel, tta)}
    # A published single network is set beside our best single network, not an ensemble.
    one = board.get("best_single") or {}
    if one.get("run") and (one["run"], one.get("tta")) != (sel, tta):
        r = _best_row(board, one["run"], one.get("tta"))
        out["best_single"] = {
            "label": f"`{one['run']}` ({one.get('tta')}), best single network on PublicTest",
            "accuracy": r.get("PrivateTest acc"), "ci": r.get("PrivateTest acc 95% CI"),
            "publictest": r.get("PublicTest acc"), "setup": _row_setup(r, board, [one["run"]]),
            "extra": _seed_extra(board, one["run"], one.get("tta"))}
    else:
        out["best_single"] = out["selected"]
    dep = board.get("deployable")
    if dep:
        r = _best_row(board, dep["name"], dep["tta"])
        out["deployable"] = {"label": f"`{dep['name']}` ({dep['tta']}), deployable pick",
                             "accuracy": r.get("PrivateTest acc"),
                             "ci": r.get("PrivateTest acc 95% CI"),
                             "setup": _row_setup(r, board, dep["runs"])}
    ens = [r for r in board.get("summary_table", []) if (r.get("runs") or 1) > 1]
    if ens:
        r = max(ens, key=lambda r: r.get("PublicTest acc") or 0)
        name = str(r["model"]).replace(" (selected)", "")
        out["ensemble"] = {"label": f"`{name}` ({r.get('TTA')}), best ensemble on PublicTest",
                           "accuracy": r.get("PrivateTest acc"),
                           "ci": r.get("PrivateTest acc 95% CI"),
                           "setup": _row_setup(r, board, (board.get("ensembles") or {})
                                               .get(name, []))}
    else:
        out["ensemble"] = {"label": "an ensemble of our runs", "status": "not run: no ensemble "
                           "scored yet (its runs are not finished)",
                           "command": LEADERBOARD_COMMAND}
    return out


def _study_figures(comp: Mapping) -> dict[str, dict]:
    methods = {r.get("model"): r for r in comp.get("methods_table", [])}
    commands = {r.get("model"): r.get("command") for r in comp.get("not_run") or []}
    profile = (comp.get("study") or {}).get("profile", "?")
    out = {}
    for r in comp.get("summary_table", []):
        m = methods.get(r["model"], {})
        label = f"`{r['model']}` (study, `{profile}` profile)"
        if r.get("status") != "ok":
            out[r["model"]] = {"label": label, "status": r.get("status"),
                               "command": commands.get(r["model"])}
            continue
        out[r["model"]] = {
            "label": label, "accuracy": r.get("PrivateTest acc"),
            "setup": (f"{fmt(m.get('train images'))} of {fmt(m.get('Training images'))} "
                      f"Training images, input / backbone {m.get('input / backbone (px)')} px, "
                      f"{m.get('epochs run (best)') or r.get('epochs')} epochs, "
                      f"{fmt(m.get('wall time (s)'))} s on {m.get('hardware')}")}
    return out


def our_figures(results: Mapping[str, Mapping], shipped: Mapping | None = None) -> dict:
    """Our figures by the keys the published entries name in "ours"."""
    out: dict[str, dict] = {}
    board = results.get(BEST_MODELS)
    if board:
        out.update(_leaderboard_figures(board))
    else:
        for key in ("selected", "best_single", "deployable", "ensemble"):
            out[key] = {"label": f"our {key} model", "status": "not run: no leaderboard yet",
                        "command": LEADERBOARD_COMMAND}
    if results.get(COMPARISON):
        out.update(_study_figures(results[COMPARISON]))
    meta = shipped if shipped is not None else _shipped_meta()
    if meta:
        pri = ((meta.get("metrics") or {}).get("PrivateTest") or {}).get("none") or {}
        members = meta.get("members") or []
        out["shipped"] = {
            "label": "the shipped model (`fer_study/assets/default_model`)",
            "accuracy": pri.get("accuracy"),
            "setup": f"{fmt(meta.get('params'))} parameters, "
                     + ", ".join(f"{m.get('epochs_run')} epochs" for m in members)
                     + f", flip inside the model, {meta.get('input_size')} px"}
    fer = (results.get("benchmark_realtime") or {}).get("accuracy") or {}
    if fer.get("fer") is not None:
        out["fer"] = {"label": "`fer`'s bundled model, measured here", "accuracy": fer["fer"],
                      "split": fer.get("split")}
    return out


def _why(e: Mapping, ours: Mapping, figures: Mapping) -> str:
    parts = [f"Theirs: {e['setup']}."]
    if e.get("selected_on_test"):
        parts.append("Their model was chosen on a test split, which flatters its accuracy "
                     "there.")
    if e.get("split_key") == "PublicTest" and ours.get("publictest") is not None:
        parts.append(f"Their figure is on PublicTest, where ours is "
                     f"{fmt(ours['publictest'])} (the split ours was chosen on).")
    if ours.get("accuracy") is None:
        parts.append(f"Ours is {ours.get('status', 'not run')}"
                     + (f" (`{ours['command']}`)." if ours.get("command") else "."))
    else:
        parts.append(f"Ours: {ours.get('setup')}.")
    here = figures.get(e.get("measured_here") or "")
    if here:
        parts.append(f"Their model measured here on {here.get('split')}: "
                     f"{fmt(here['accuracy'])}.")
    return " ".join(parts)


def published_table(results: Mapping[str, Mapping], entries: list[dict] | None = None,
                    shipped: Mapping | None = None) -> list[dict]:
    """One row per published figure, with ours beside it (see the module doc)."""
    entries = load_published() if entries is None else entries
    figures = our_figures(results, shipped)
    rows = []
    for e in entries:
        ours = figures.get(e["ours"]) or {"label": f"`{e['ours']}`", "status": "not run",
                                          "command": None}
        acc = ours.get("accuracy")
        rows.append({
            "published (citation, not ours)": f"{e['cite']}: {e['model']}",
            "their acc": e["accuracy"],
            "protocol (theirs; ours)": f"Theirs: measured on {e['split']}; model chosen on: "
                                       f"{e['selection']}. Ours: {OUR_PROTOCOL}.",
            "ours": ours["label"],
            "our PrivateTest acc": acc if acc is not None else ours.get("status", "not run"),
            "gap (points)": None if acc is None else round(100 * (acc - e["accuracy"]), 2),
            "why the gap": _why(e, ours, figures)
            + (f" {ours['extra']}." if ours.get("extra") else ""),
        })
    return rows


def fer_comparison_lines(results: Mapping[str, Mapping],
                         entries: list[dict] | None = None) -> list[str]:
    """What the comparisons with the `fer` package favour, and the FPS comparison's detector
    settings on both sides, every number and setting read from the benchmark files."""
    entries = load_published() if entries is None else entries
    fer_entry = next((e for e in entries if e.get("measured_here") == "fer"), None)
    rt = results.get("benchmark_realtime") or {}
    rob = results.get("benchmark_robustness") or {}
    out = []
    if fer_entry:
        acc = rt.get("accuracy") or {}
        line = (f"- **`fer`'s classifier was selected on the test splits.** {fer_entry['cite']}'s "
                f"{fer_entry['model']}, which `fer` bundles, was chosen on "
                f"{fer_entry['selection']}. Every comparison with it on PrivateTest therefore "
                "favours `fer`")
        if acc.get("fer") is not None:
            line += (f": classifier accuracy on {acc.get('split')}'s crops, ours "
                     f"{fmt(acc.get('ours'))} vs `fer` {fmt(acc.get('fer'))}")
        if (rob.get("fer") or {}).get("clean_accuracy") is not None:
            line += (f"; robustness on {rob.get('images')} {rob.get('split')} faces, clean "
                     f"accuracy ours {fmt(rob['ours'].get('clean_accuracy'))} vs `fer` "
                     f"{fmt(rob['fer']['clean_accuracy'])}")
        out.append(line + ".")
    h, dets, fer = rt.get("headline") or {}, rt.get("detectors") or {}, rt.get("fer") or {}
    if h and dets:
        size = "x".join(str(v) for v in rt.get("frame_size") or [])
        machine = rt.get("machine") or {}
        like = next((r for r in rt.get("runs", []) if r.get("detector") == "haar_min50"
                     and r.get("scene") == h.get("scene") and r.get("detect_every") == 1), None)
        line = (f"- **The FPS comparison's detectors** (`{rt.get('command')}`; {size} frames, "
                f"1 thread, {machine.get('cpu_model')} x{machine.get('logical_cores')}"
                + (f"; {rt['note']}" if rt.get("note") else "") + "). Ours: "
                + "; ".join(f"`{k}` = {v}" for k, v in dets.items())
                + f". `fer`: {fer.get('detector')}, then {fer.get('classifier')}. "
                f"The headline {fmt(h.get('fps_ratio'))}x (ours {fmt(h.get('ours_fps'))} FPS vs "
                f"`fer` {fmt(h.get('fer_fps'))}, medians, scene `{h.get('scene')}`) sets our "
                "default detector, which shrinks the frame before detecting, against `fer`'s "
                "Haar cascade on the full-resolution frame, so it measures the two pipelines as "
                "shipped, not the same detector")
        if like and like.get("fps_ratio_medians") is not None:
            line += (f"; with our Haar cascade at `fer`'s face sizes (`haar_min50`) the ratio is "
                     f"{fmt(like['fps_ratio_medians'])}x")
        out.append(line + ".")
    return out
