"""The study report, rendered from the results files (:mod:`fer_study.results`).

:func:`build_report` turns ``results/*.json`` into ``REPORT.md`` and ``REPORT.html``. It types
no numbers itself: every value in the report is read from a results file, and every table
names the file and the command that produced it.

Convention shared with notebooks 05-07 (and any later stage): a results file may carry
``"summary_table": [{column: value, ...}, ...]`` (one dict per row; the first row's keys, then
any new keys of later rows, give the columns) and/or ``"summary_tables": {title: [rows]}``.
The report renders those generically as markdown tables, with the file's ``figures`` list and
its top-level scalar values, so a stage's report section needs no code here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from fer_study.assets import DEFAULT_MODEL_META
from fer_study.citation import citation_section
from fer_study.comparison import pretrained_vs_scratch
from fer_study.conclusions import conclusions_section
from fer_study.data_effects_report import NAME as DATA_EFFECTS
from fer_study.data_effects_report import counts_lines, data_effects_section
from fer_study.errors import ResultsError
from fer_study.ethics import ethics_section
from fer_study.markdown import fmt, markdown_to_html, md_table
from fer_study.published import fer_comparison_lines, published_table

# leaderboard.py (the lead's branch moves it into the study) imports split_names from here.
from fer_study.results import (
    BASELINE,
    BEST_MODELS,
    COMPARISON,
    DATA_EXPLORATION,
    GOAL_ACCURACY,
    GOAL_DISGUST_RECALL,
    GOAL_MACRO_F1,
    HUMAN_SOURCE,
    MANIFEST,
    META_KEYS,
    RESULTS,
    SOTA_SINGLE,
    SOTA_SOURCE,
    SYNTHETIC_BANNER,
    TRANSFER,
    describe_data,
    is_study_stage,
    is_synthetic,
    make_command,
    notebook_of,
    project_path,
    read_results,
    section_title,
    split_names,  # noqa: F401
)

# Stages with a section of their own; every other stage's results render generically.
OWN_SECTIONS = (DATA_EXPLORATION, BASELINE, TRANSFER, COMPARISON)
# Results files written by one command only (its default output), for files that predate
# the command recording itself (the EfficientNet-Lite0 check was scripts/verify_... then).
SCRIPT_OUTPUTS = {
    "efficientnet_lite0_conversion":
        "python -m fer_study verify-efficientnet-lite --torch-python PYTHON_WITH_TORCH",
}


def command_of(res: Mapping, name: str | None = None) -> str:
    """The command that made a results file: its own `command` (leaderboard, benchmark and
    verification scripts record one), else the study command of the stage that wrote it,
    else the one script that writes a file of that name. A file with none says so."""
    if res.get("command"):
        return str(res["command"]).strip()
    study = res.get("study") or {}
    if study.get("command"):
        return study["command"]
    if study.get("profile"):
        return make_command(study["profile"], study.get("data"), study.get("ferplus"))
    return SCRIPT_OUTPUTS.get(name or "", "not recorded")


def _source(name: str, res: Mapping) -> str:
    return f"_Source: `results/{name}.json`, made by `{command_of(res, name)}`._"


# --------------------------------------------------------------------------- provenance

def results_commits(results: Mapping[str, Mapping], shipped: Mapping | None = None
                    ) -> list[dict]:
    """Which code made which results: one entry per (commit, uncommitted changes) as the
    files record it (``git``, or ``machine.git`` in the benchmark files), in file order."""
    groups: dict[tuple, list[str]] = {}
    files = [(f"results/{k}.json", v) for k, v in results.items()]
    if shipped:
        files.append(("fer_study/assets/default_model.json", shipped))
    for name, res in files:
        git = res.get("git") or (res.get("machine") or {}).get("git") or {}
        groups.setdefault((git.get("commit"), bool(git.get("dirty"))), []).append(name)
    return [{"commit": c, "dirty": d, "files": f} for (c, d), f in groups.items()]


def commits_lines(commits: list[dict]) -> list[str]:
    """The report header's list of commits and the results each one made."""
    known = [c for c in commits if c["commit"]]
    out = [f"**Code behind these results:** {len({c['commit'] for c in known})} commit"
           f"{'s' if len({c['commit'] for c in known}) != 1 else ''} of this repository "
           "(`git show COMMIT`). \"+ uncommitted changes\" means the working tree differed "
           "from the commit when the file was made, so that commit alone may not re-create it "
           "exactly; the command in each file's source line does.", ""]
    for c in commits:
        head = (f"`{c['commit'][:12]}`" + (" + uncommitted changes" if c["dirty"] else "")
                if c["commit"] else "commit not recorded")
        out.append(f"- {head}: " + ", ".join(f"`{f}`" for f in c["files"]))
    return out + [""]


# --------------------------------------------------------------------------- report

def build_report(reports_dir: str | os.PathLike) -> Path:
    """Write ``REPORT.md`` and ``REPORT.html`` in `reports_dir` from its results files (the
    README's results section is :func:`fer_study.readme.update_readme`)."""
    root = project_path(reports_dir)
    results = read_results(root)
    if not results:
        raise ResultsError(f"no results files in {root / RESULTS}; run the study first "
                           f"(make study)")
    md = _render(results, root)
    out = root / "REPORT.md"
    out.write_text(md)
    (root / "REPORT.html").write_text(markdown_to_html(md, title="fer-study report"))
    return out


def shipped_model() -> dict | None:
    try:
        return json.loads(DEFAULT_MODEL_META.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def shipped_line(meta: Mapping) -> str:
    m = meta.get("metrics") or {}
    pub = (m.get("PublicTest") or {}).get("none") or {}
    pri = (m.get("PrivateTest") or {}).get("none") or {}
    tfl = meta.get("tflite") or {}
    members = meta.get("members") or ([meta["training"]] if meta.get("training") else [])
    cmds = "; ".join(f"`{x.get('command', '?')}`" for x in members) or "?"
    flip = " with flip TTA inside the model" if meta.get("tta_in_model") == "flip" else ""
    return (f"**Shipped real-time model** (`fer_study/assets/default_model.json`, made by "
            f"`{meta.get('command') or 'python -m fer_study ship'}`): `{meta.get('model')}`{flip}, "
            f"{fmt(meta.get('params'))} parameters, trained on "
            f"{(meta.get('data') or {}).get('dataset', '?')}; "
            f"PublicTest {fmt(pub.get('accuracy'))}, PrivateTest {fmt(pri.get('accuracy'))} "
            f"(as the pipeline runs it: one centre crop; TFLite "
            f"{fmt(tfl.get('privatetest_accuracy_no_tta'))}, "
            f"{fmt(tfl.get('latency_ms_1face_1thread'))} ms per face on 1 thread). "
            f"Trained with {cmds}.")


def _stale(results: dict[str, dict], root: Path) -> list[str]:
    """Study results files outside the last study plan (recorded by the runner's manifest)."""
    manifest = root / RESULTS / MANIFEST
    try:
        plan = json.loads(manifest.read_text()).get("plan") if manifest.is_file() else None
    except json.JSONDecodeError:
        plan = None
    if not plan:
        return []
    return [k for k in results if is_study_stage(k) and k not in plan]


def _render(results: dict[str, dict], root: Path) -> str:
    stale = _stale(results, root)
    results = {k: v for k, v in results.items() if k not in stale}
    study_files = {k: v for k, v in results.items() if is_study_stage(k)}
    provs = {k: v.get("data") for k, v in study_files.items()}
    synthetic = any(is_synthetic(p or {}) for p in provs.values())
    main = results.get(COMPARISON) or results.get(DATA_EXPLORATION) or \
        next(iter(study_files.values()), next(iter(results.values())))
    study = main.get("study") or {}
    parts: list[str] = ["# fer-study: facial emotion recognition on FER2013 — study report", ""]
    if synthetic:
        parts += [_banner_md(), ""]
    made = sorted(str(v.get("created_utc") or v.get("started"))[:10] for v in results.values()
                  if v.get("created_utc") or v.get("started"))
    parts += [
        f"Generated by `fer_study.report.build_report` from `results/*.json` "
        f"({len(results)} file{'s' if len(results) != 1 else ''}); no number in this report "
        f"is typed by hand. "
        f"Re-create it with `{command_of(main)}`. "
        f"Profile: **{study.get('profile', '?')}**"
        + (f"; results made {made[0]} to {made[-1]}." if made else "."), ""]
    parts += commits_lines(results_commits(results, shipped_model()))
    idents = {k: describe_data(p) for k, p in provs.items()}
    if len(set(idents.values())) > 1:
        parts += ["> **Warning: the results files come from different data.** They are not "
                  "one study; re-run `make study` to make them consistent.", ">"]
        parts += [f"> - `{k}.json`: {v}" for k, v in idents.items()]
        parts.append("")
    parts += conclusions_section(results, synthetic)
    parts += _data_section(results.get(DATA_EXPLORATION), main)
    parts += _methods_section(results.get(COMPARISON))
    parts += _results_section(results.get(COMPARISON), results)
    if results.get(BEST_MODELS):
        parts += _best_models_section(results[BEST_MODELS])
    if not synthetic:  # published FER2013 figures and FER2013's data problems
        parts += _published_section(results)
        parts += data_effects_section(results.get(DATA_EFFECTS),
                                      (results.get(BEST_MODELS) or {}).get("selected"))
    for name in sorted(study_files):
        if notebook_of(name) not in OWN_SECTIONS:
            parts += _generic_section(name, results[name])
    fer_lines = fer_comparison_lines(results)
    if fer_lines:
        parts += ["## Comparisons with the `fer` package: what they favour", "", *fer_lines, ""]
    others = [k for k in results if k not in study_files and k not in (BEST_MODELS, DATA_EFFECTS)]
    if others:
        parts += ["## Other results files", ""]
        for name in others:
            parts += _generic_section(name, results[name], level="###")
    if stale:
        parts += ["## Stale results files (left out)", "",
                  "Not part of the last study plan (left over from an earlier profile or "
                  "stage list), so not used above: "
                  + ", ".join(f"`results/{k}.json`" for k in stale) + ".", ""]
    parts += ethics_section(results, synthetic)
    parts += citation_section()
    parts += _sources(results)
    return "\n".join(parts).rstrip() + "\n"


def _banner_md() -> str:
    return (f'<div class="banner">{SYNTHETIC_BANNER}</div>\n\n'
            f"> **{SYNTHETIC_BANNER}.** Every number below was computed on the procedurally "
            "drawn synthetic demo set that ships with the code, to show the pipeline end to "
            "end. They say nothing about facial emotion recognition on FER2013. Run "
            "`make study PROFILE=cpu DATA=path/to/fer2013.csv` for real results.")


def _data_section(res: dict | None, main: dict) -> list[str]:
    out = ["## Data", ""]
    if res is None:
        prov = main.get("data") or {}
        out += [f"Dataset: {prov.get('dataset', '?')} (notebook 01 has not been run, so no "
                "data exploration results are available).", ""]
        return out
    prov = res.get("data") or {}
    items = [("dataset", prov.get("dataset")), ("format", prov.get("format")),
             ("file", prov.get("path")), ("sha256", prov.get("sha256")),
             ("pixels sha256", prov.get("pixels_sha256")),
             ("synthetic", prov.get("synthetic")),
             ("synthetic seed / sizes", f"{prov.get('seed')} / {fmt(prov.get('sizes'))}"
              if prov.get("synthetic") else None),
             ("FER+ votes", prov.get("ferplus_path") or "not used"),
             ("FER+ sha256", prov.get("ferplus_sha256")),
             ("note", prov.get("note"))]
    out += [md_table([{"field": k, "value": v} for k, v in items if v is not None]), ""]
    if res.get("summary_table"):
        out += ["**Images per split and class**", "", md_table(res["summary_table"]), ""]
    dup = res.get("duplicates")
    if dup:
        out += [f"**Duplicates across splits** ({dup.get('method', '')}): "
                f"{fmt(dup.get('exact_pairs'))} exact and {fmt(dup.get('near_pairs'))} "
                "near-duplicate image pairs sit in different splits.", ""]
        if dup.get("by_split_pair"):
            out += [md_table([{"splits": k, **v} for k, v in dup["by_split_pair"].items()]), ""]
    if res.get("data_effects_counts"):
        out += ["**Data effects that need no model** (`fer_study.data_effects.data_counts`; "
                "measured on models in the data-effects section):", "",
                *counts_lines(res["data_effects_counts"]), ""]
    fp = res.get("ferplus")
    if fp:
        out += [f"**FER2013 vs FER+ labels**: on {fmt(fp.get('rows_compared'))} images with a "
                f"FER+ label, the FER+ majority vote agrees with the FER2013 label for "
                f"{fmt(fp.get('agreement'))} of them.", ""]
        if fp.get("agreement_by_class"):
            out += [md_table([{"FER2013 label": k, "agreement": v}
                              for k, v in fp["agreement_by_class"].items()]), ""]
    else:
        out += ["FER+ votes were not given, so the FER2013-vs-FER+ agreement is not "
                "computed.", ""]
    out += _figures(res) + [_source(DATA_EXPLORATION, res), ""]
    return out


def _methods_section(res: dict | None) -> list[str]:
    out = ["## Methods", "",
           "Protocol: every model is fitted on **Training**, its epoch (and the best model) "
           "is selected on **PublicTest**, and **PrivateTest** is evaluated once, with the "
           "selected checkpoint, for reporting. (With the Kaggle folder release, which has no "
           "PublicTest/PrivateTest, a stratified part of Training is the selection split and "
           "`test/` the report split; the table's column names then say so.) Pixel inputs are "
           "48x48 greyscale; transfer backbones see them resized inside the model. Transfer "
           "runs train the new head with the backbone frozen first, then fine-tune.", ""]
    if res and res.get("methods_table"):
        out += ["**Runs** (data, splits, epochs, wall time and hardware as recorded in each "
                "run's results file):", "", md_table(res["methods_table"]), "",
                _source(COMPARISON, res), ""]
    return out


def _results_section(res: dict | None, results: dict[str, dict]) -> list[str]:
    out = ["## Results", ""]
    if res is None:
        return out + ["Notebook 04 (model comparison) has not been run.", ""]
    sel, rep = res.get("selection_split"), res.get("report_split")
    out += [f"### Model comparison (selected on {sel}, reported on {rep})", "",
            md_table(res.get("summary_table", [])), "",
            _source(COMPARISON, res), ""]
    ref = res.get("references") or {}
    majority = _majority_rate(results.get(DATA_EXPLORATION), rep or "PrivateTest")
    if ref:
        out += [f"Reference points: chance = {fmt(ref.get('chance'))} (1/7)"
                + (f"; always answering the majority class ({majority[0]}) = "
                   f"{fmt(majority[1])} on {rep}" if majority else "")
                + f"; human accuracy ≈ {fmt(ref.get('human'))} "
                f"({ref.get('human_source', HUMAN_SOURCE)}).", ""]
    lat = res.get("latency") or {}
    if lat:
        out += [f"CPU latency: {lat.get('method', '')}. Size: the saved `best.keras` "
                "checkpoint on disk (it includes the optimizer state of the trainable weights; "
                "deployable TFLite sizes are in the optimisation section when it was run).", ""]
    if res.get("best_model"):
        out += [f"**Best single network on {sel}: `{res['best_model']}`** ({sel} accuracy "
                f"{fmt(res.get('best_selection_accuracy'))}; its {rep} accuracy, measured "
                f"once: {fmt(res.get('best_report_accuracy'))}). Run folder: "
                f"`{res.get('best_run_dir')}`.", ""]
    for r in res.get("not_run") or []:
        reason = " ".join(str(r.get("reason") or "").split())  # one line in a list item
        out += [f"- **`{r['model']}` — {r['status']}.** {reason}"
                + (f" Run it with `{r['command']}`." if r.get("command") else "")]
    out += [""] if res.get("not_run") else []
    pvs = pretrained_vs_scratch(res.get("summary_table", []), sel or "PublicTest",
                                rep or "PrivateTest")
    if pvs:
        out += ["### Pretrained vs from scratch (same architecture, data, input size and "
                "epochs)", "", md_table(pvs), ""]
        for r in pvs:
            d = r.get(f"{rep} difference (points)")
            if d is not None:
                out += [f"- `{r['architecture']}` with {r['pretrained weights']} weights vs "
                        f"from scratch: {rep} {fmt(r[f'{rep} acc pretrained'])} vs "
                        f"{fmt(r[f'{rep} acc scratch'])}, a difference of {d:+.2f} points: "
                        f"{r.get('verdict') or 'one seed each'}."]
                for arm in ("pretrained", "scratch"):
                    acc = r.get(f"{rep} acc {arm}")
                    if majority and acc is not None and abs(acc - majority[1]) < 0.005:
                        out += [f"  - The {arm} model's {rep} accuracy is the majority-class "
                                f"rate ({majority[0]}, {fmt(majority[1])}): under this budget "
                                "it did not learn beyond answering the most frequent class."]
        out += [""]
    if res.get("per_class_f1"):
        out += [f"### Per-class F1 on {rep}", "", md_table(res["per_class_f1"]), "",
                _source(COMPARISON, res), ""]
    out += _figures(res)
    run_figs = [f for k, v in results.items() if notebook_of(k) in (BASELINE, TRANSFER)
                for f in v.get("figures", [])]
    if run_figs:
        out += ["Per-run figures (learning curves, confusion matrices, per-class scores): "
                + ", ".join(f"[{Path(f).stem}]({f})" for f in run_figs), ""]
    return out


def _majority_rate(explore: Mapping | None, split: str) -> tuple[str, float] | None:
    """(class, share) of the most frequent class of `split`, from notebook 01's counts."""
    counts = ((explore or {}).get("class_counts") or {}).get(split) or {}
    total = sum(counts.values())
    if not total:
        return None
    top = max(counts, key=counts.get)
    return top, counts[top] / total


def target_rows(res: Mapping) -> list[dict]:
    """The selected model against the study's goals: goal, value, how far short."""
    targets = [("PrivateTest accuracy", GOAL_ACCURACY, res.get("selected_privatetest_accuracy")),
               ("PrivateTest macro-F1", GOAL_MACRO_F1, res.get("selected_privatetest_macro_f1")),
               ("Disgust recall (PrivateTest)", GOAL_DISGUST_RECALL,
                res.get("selected_disgust_recall"))]
    return [{"target": name, "goal": fmt(goal), "selected model": fmt(got),
             "status": "reached" if got >= goal else f"{100 * (goal - got):.1f} points short"}
            for name, goal, got in targets if got is not None]


def _targets_lines(res: Mapping) -> list[str]:
    """How far the selected model is from the study's targets, and the runs' own evidence
    of why: un-augmented Training accuracy close to PublicTest means the nets under-fit."""
    rows = target_rows(res)
    runs = res.get("runs") or {}
    minutes = sum((r.get("train_seconds") or 0) for r in runs.values()) / 60
    out = ["**Against the targets** (goals set by the study, measured by the selected model):",
           "", md_table(rows), "",
           f"The best published single network reaches {fmt(SOTA_SINGLE)} ({SOTA_SOURCE}), a "
           f"larger VGG-style network trained far longer on a GPU; the runs above took "
           f"{minutes:.0f} training minutes in all on the hardware listed.", ""]
    fit = [(n, r["training_accuracy"], r["publictest_accuracy"]) for n, r in runs.items()
           if r.get("training_accuracy") is not None and r.get("publictest_accuracy") is not None]
    if fit:
        gaps = [100 * (t - p) for _, t, p in fit]
        cells = "; ".join(f"`{n}` {fmt(t)} vs {fmt(p)}" for n, t, p in fit)
        verdict = ("so the recipes under-fit: more capacity and longer training, not more "
                   "regularisation, are what they lack" if max(gaps) < 5 else
                   "so at least one recipe fits Training well beyond PublicTest: it over-fits, "
                   "and stronger regularisation or more data would help it")
        sizes = sorted({r["training_accuracy_n"] for r in runs.values()
                        if r.get("training_accuracy_n")})
        sample = (f" (on a fixed sample of {' / '.join(f'{n:,}' for n in sizes)} Training "
                  f"images)" if sizes else "")
        out += [f"Why: un-augmented Training accuracy{sample} vs PublicTest accuracy per run "
                f"(no TTA): "
                f"{cells}; the gap is at most {max(gaps):.1f} points, {verdict}.", ""]
    return out


def _best_models_section(res: Mapping) -> list[str]:
    sel = res.get("selected")
    out = ["## Best models (accuracy push)", "",
           f"Selection: {res.get('selection')}. Selected: **`{sel}`** with TTA "
           f"`{res.get('selected_tta')}` — PublicTest "
           f"{fmt(res.get('selected_publictest_accuracy'))}, "
           f"PrivateTest {fmt(res.get('selected_privatetest_accuracy'))}, PrivateTest macro-F1 "
           f"{fmt(res.get('selected_privatetest_macro_f1'))}, Disgust recall "
           f"{fmt(res.get('selected_disgust_recall'))}. Data: {describe_data(res.get('data'))}.",
           "", md_table(res.get("summary_table", [])), ""]
    acc = res.get("selected_privatetest_accuracy")
    if acc is not None:
        out += _targets_lines(res)
    dep = res.get("deployable")
    if dep:
        out += [f"For the real-time pipeline ({dep.get('rule', 'TTA none or flip')}): "
                f"`{dep.get('name')}` with TTA `{dep.get('tta')}`.", ""]
    if res.get("seed_table"):
        out += ["**Mean and spread over seeds** (runs sharing a recipe):", "",
                md_table(res["seed_table"]), ""]
    runs = res.get("runs") or {}
    if runs:
        out += ["Commands (each run: fit on Training, best epoch on PublicTest):", ""]
        out += [f"- `{n}`: `{r.get('command')}`" for n, r in runs.items()]
        out.append("")
    for name, members in (res.get("ensembles") or {}).items():
        out += [f"- ensemble `{name}`: the mean of the probabilities of "
                + ", ".join(f"`{m}`" for m in members)]
    shipped = shipped_model()
    if shipped:
        out += ["", shipped_line(shipped)]
    out += ["", _source(BEST_MODELS, res), ""]
    return out


def _published_section(results: Mapping[str, Mapping]) -> list[str]:
    return ["## Published FER2013 results beside ours", "",
            "The published figures are citations (`fer_study/assets/published_results.json`), "
            "not results of this repository; ours are read from the results files named in "
            "this report. Each row says on which split the published figure was measured and "
            "how its model was chosen, and why ours differs.", "",
            md_table(published_table(results)), ""]


def _figures(res: Mapping, limit: int = 12) -> list[str]:
    figs = res.get("figures") or []
    out = [f"![{Path(f).stem}]({f})" for f in figs[:limit]]
    if len(figs) > limit:
        out.append("More figures: " + ", ".join(f"[{Path(f).stem}]({f})" for f in figs[limit:]))
    return out + [""] if out else []


def _generic_section(name: str, res: Mapping, level: str = "##") -> list[str]:
    title = section_title(name, res)
    out = [f"{level} {title}", ""]
    if res.get("status") not in (None, "ok"):
        out += [f"Status: **{res['status']}**" + (f" — {res['reason']}" if res.get("reason")
                                                  else ""), ""]
    scalars = [{"key": k, "value": v} for k, v in res.items()
               if k not in META_KEYS and isinstance(v, (int, float, str, bool))
               and not (isinstance(v, str) and len(v) > 200)]
    if scalars:
        out += [md_table(scalars), ""]
    if res.get("summary_table"):
        out += [md_table(res["summary_table"]), ""]
    for title2, rows in (res.get("summary_tables") or {}).items():
        out += [f"**{title2}**", "", md_table(rows), ""]
    out += _figures(res)
    out += [_source(name, res), ""]
    return out


def _sources(results: dict[str, dict]) -> list[str]:
    rows = [{"file": f"results/{k}.json", "status": v.get("status", "—"),
             "data": describe_data(v.get("data")),
             "made": v.get("created_utc") or v.get("started"),
             "git": str((v.get("git") or {}).get("commit") or "—")[:12],
             "command": command_of(v, k)} for k, v in results.items()]
    return ["## Sources", "", md_table(rows), ""]
