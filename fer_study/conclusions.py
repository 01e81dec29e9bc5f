"""The study's conclusions, stated plainly and computed from the results files (no number typed
by hand): what won, by how much and how sure, including the negative findings.

Each conclusion names the results file it comes from; a conclusion whose results are missing
is left out rather than guessed. Ties are called ties: an interval that covers zero, or a
McNemar p-value of 0.05 or more, is "no significant difference".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fer_study.comparison import pretrained_vs_scratch
from fer_study.markdown import fmt
from fer_study.models import REGISTRY
from fer_study.results import BEST_MODELS, COMPARISON

__all__ = ["conclusions", "conclusions_section"]

SEL, REP = "PublicTest", "PrivateTest"


def _pct(x: float | None) -> str:
    return "?" if x is None else f"{100 * x:.1f}%"


def _best_models(res: Mapping) -> list[str]:
    rows = res.get("summary_table") or []
    sel = next((r for r in rows if str(r.get("model", "")).endswith("(selected)")), None)
    if not sel:
        return []
    lo, hi = sel.get(f"{REP} acc 95% CI") or (None, None)
    ci = f" (95% interval {_pct(lo)}–{_pct(hi)})" if lo is not None else ""
    members = [run.get("config", {}).get("model") for name, run in
               (res.get("runs") or {}).items() if name in (res.get("selected_runs") or [])]
    scratch = bool(members) and all(m in REGISTRY and not REGISTRY[m].is_transfer
                                    for m in members)
    lead = ("**The best model is trained from scratch on FER2013 alone.** " if scratch
            else "")
    out = [f"{lead}The leaderboard's selection on {SEL} is `{res.get('selected')}` (TTA "
           f"`{res.get('selected_tta')}`): {REP} {_pct(sel.get(f'{REP} acc'))}{ci}, macro-F1 "
           f"{fmt(sel.get(f'{REP} macro-F1'))} (`results/{BEST_MODELS}.json`)."]
    seeds = [r for r in res.get("seed_table") or [] if r.get("TTA") == res.get("selected_tta")]
    if seeds:
        s = seeds[0]
        n = len(str(s.get("runs", "")).split(", "))
        out.append(f"Over {n} seeds of the `{s.get('recipe')}` recipe (TTA `{s.get('TTA')}`) "
                   f"{REP} is {_pct(s[f'{REP} acc mean'])} ± {100 * s[f'{REP} acc sd']:.1f} "
                   f"points (sd); one seed's number is not the recipe's.")
    else:
        out.append("The headline recipe has one finished seed so far; its seed spread is not "
                   "measured yet (`make runs` trains the others).")
    for t in res.get(f"{REP}_paired_tests") or []:
        out.append(f"Against {t.get('b_is')} `{t.get('b')}`: McNemar p = "
                   f"{t.get('p_value', float('nan')):.3g}, {t.get('verdict')}.")
    return out


def _scratch_vs_transfer(comp: Mapping, best: Mapping | None) -> list[str]:
    rows = [r for r in comp.get("summary_table") or [] if r.get("status") == "ok"]
    transfer = [r for r in rows if r.get("kind") == "transfer"]
    if not transfer:
        return []
    t = max(transfer, key=lambda r: r.get(f"{SEL} acc") or 0)
    out = []
    scratch = [r for r in rows if r.get("kind") == "scratch" and r.get(f"{REP} acc") is not None]
    if scratch:
        s = max(scratch, key=lambda r: r.get(f"{SEL} acc") or 0)
        d = 100 * ((s.get(f"{REP} acc") or 0) - (t.get(f"{REP} acc") or 0))
        if d > 0:
            out.append(f"**Under this study's CPU budget, transfer learning lost.** The best "
                       f"from-scratch network, `{s['model']}` ({REP} {_pct(s[f'{REP} acc'])}), "
                       f"beat the best budget transfer model, `{t['model']}` with "
                       f"{t.get('pretrained weights')} weights ({_pct(t[f'{REP} acc'])}), by "
                       f"{d:.1f} points (`results/{COMPARISON}.json`). The transfer runs had a "
                       "small, equal budget; the capstone's 224-px GPU protocol is the `full` "
                       "profile and was not run here.")
        else:
            out.append(f"The best transfer model, `{t['model']}`, beat the best from-scratch "
                       f"network `{s['model']}` by {-d:.1f} points on {REP}.")
    for r in pretrained_vs_scratch(rows, SEL, REP):
        out.append(f"Pretrained vs from scratch, `{r['architecture']}`: {r.get('verdict')}.")
    missing = [r["model"] for r in comp.get("not_run") or []
               if "weights" in str(r.get("status", "")) + str(r.get("reason", ""))]
    if missing:
        out.append("Not measured here (pretrained weights unavailable offline): "
                   + ", ".join(f"`{m}`" for m in missing) + "; each row names its command.")
    return out


def _change(run: str) -> str:
    """What an ablation run changes, from its name (configs/runs/*_ablate_<change>_s0)."""
    if "nonfacesdropped" in run:
        return "drop FER+ non-faces"
    return run.split("ablate_")[-1].removesuffix("_s0").replace("_", " ")


def _ablation(res: Mapping) -> list[str]:
    ref = res.get("reference")
    rows = [r for r in res.get("reference_tests") or [] if "verdict" in r
            and (r["TTA"] == "none" or r["run"] == ref)]  # one change at a time
    if not rows:
        return []
    parts, helped = [], []
    for r in rows:
        d = r.get(f"{REP} diff vs reference (points)")
        lo, hi = r.get(f"{REP} diff 95% CI") or (None, None)
        tie = str(r["verdict"]).startswith("tie")
        if r["run"] == ref:
            what = f"TTA `{r['TTA']}`"
        elif r["run"].rsplit("_s", 1)[0] == str(ref).rsplit("_s", 1)[0]:
            what = f"another seed (`{r['run']}`, the seed noise)"
        else:
            what = f"`{_change(r['run'])}`"
        parts.append(f"{what} {d:+.1f} points [{lo:+.1f}, {hi:+.1f}]: "
                     f"{'a tie' if tie else 'differs'}")
        if not tie and d > 0 and r["run"] != ref and "seed" not in what:
            helped.append(what)
    out = [f"**Ablation** (reduced budget: width 16, 30 epochs, one seed per change; against "
           f"`{ref}`, on {REP}, paired; `results/ablation.json`): " + "; ".join(parts) + "."]
    if helped:
        out.append("Negative finding: at this budget " + ", ".join(helped) + " scored higher "
                   "than the full recipe, so that ingredient costs accuracy over 30 epochs; "
                   "whether it pays over the headline's 60 epochs is not measured by this table.")
    return out


def _deployment(bench: Mapping) -> list[str]:
    acc, head = bench.get("accuracy") or {}, bench.get("headline") or {}
    out = []
    if acc.get("ours") is not None and acc.get("fer") is not None:
        d = 100 * (acc["ours"] - acc["fer"])
        out.append(f"**The shipped real-time model beats the `fer` package on the same faces** "
                   f"by {d:+.1f} points ({acc.get('split')}: {_pct(acc['ours'])} vs "
                   f"{_pct(acc['fer'])}; `fer`'s checkpoint was chosen on the test splits, so "
                   "this favours it; `results/benchmark_realtime.json`)."
                   if d > 0 else
                   f"The shipped model trails `fer` by {-d:.1f} points on the same faces.")
    if head.get("fps_ratio"):
        out.append(f"End to end on a 640x480 one-face frame it runs {head['fps_ratio']}x "
                   f"`fer`'s FPS ({head.get('ours_fps')} vs {head.get('fer_fps')}), each with "
                   "its own default detector (see the FPS section for like-for-like settings).")
    return out


def _data(effects: Mapping) -> list[str]:
    sel = next((m for m in effects.get("models") or [] if m.get("role") == "selected"), None)
    if not sel:
        return []
    e = sel["effects"]
    leak, fp = e.get("leakage") or {}, e.get("ferplus") or {}
    out = []
    if leak.get("without_them"):
        d = 100 * (e["all"]["accuracy"] - leak["without_them"]["accuracy"])
        out.append(f"**FER2013's test set leaks.** {leak['test_images_also_in_training']} "
                   f"distinct {REP} images are also in Training; without them the selected "
                   f"model scores {_pct(leak['without_them']['accuracy'])}, {d:.1f} points "
                   "less (`results/data_effects.json`).")
    agree, dis = fp.get("where_ferplus_agrees_with_fer2013"), fp.get("where_ferplus_disagrees")
    if agree and dis:
        out.append(f"Label noise bounds the score: where FER+'s ten annotators agree with the "
                   f"FER2013 label it scores {_pct(agree['accuracy'])}, where they disagree "
                   f"{_pct(dis['accuracy'])}.")
    return out


def conclusions(results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The conclusions the results files support (each a markdown sentence or two)."""
    out: list[str] = []
    if results.get(BEST_MODELS):
        out += _best_models(results[BEST_MODELS])
    if results.get(COMPARISON):
        out += _scratch_vs_transfer(results[COMPARISON], results.get(BEST_MODELS))
    if results.get("ablation"):
        out += _ablation(results["ablation"])
    if results.get("benchmark_realtime"):
        out += _deployment(results["benchmark_realtime"])
    if results.get("data_effects"):
        out += _data(results["data_effects"])
    return out


def conclusions_section(results: Mapping[str, Mapping[str, Any]], synthetic: bool) -> list[str]:
    """The report's "Conclusions" section (none on the synthetic demo: nothing to conclude)."""
    if synthetic:
        return []
    lines = conclusions(results)
    if not lines:
        return []
    return ["## Conclusions", "", "Stated from the results files named in each line; a "
            "difference whose interval covers zero is called a tie.", "",
            *[f"- {line}" for line in lines], ""]
