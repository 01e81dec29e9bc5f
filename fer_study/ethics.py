"""The report's "Ethics and limitations" section and the README's short version.

The ethics text is prose about the data and the task (what FER2013 is, what its labels mean,
where emotion recognition should not be used), not a result, so it is written here once;
the limitations that depend on this study's results are computed from the results files.
"""

from __future__ import annotations

from collections.abc import Mapping

from fer_study.markdown import fmt
from fer_study.results import BEST_MODELS, COMPARISON, DATA_EXPLORATION

DATA_AND_CONSENT = (
    "**The data and consent.** FER2013 was made for the ICML 2013 representation-learning "
    "challenge (Goodfellow et al. 2013) from Google image search results for emotion-related "
    "keywords: faces were detected and cropped, reduced to 48x48 greyscale, and human "
    "labellers checked the label suggested by the search, corrected crops and removed "
    "duplicates. The people shown were not asked and did not consent to being in a "
    "machine-learning dataset, and the dataset records nothing about them: no age, gender, "
    "skin tone, culture, or whether the expression was posed. Its demographic make-up is "
    "unknown and cannot be audited from the data, and web image search is not a "
    "representative sample of people, so how the models do for different groups is not "
    "measured here. Do not use the images to identify or profile anyone.")
WHAT_LABELS_MEAN = (
    "**What a label means.** Each FER2013 image has a single label, with no record of how many "
    "people agreed on it. FER+ (Barsoum et al. 2016) had ten crowd workers relabel every image, "
    "and their majority often disagrees with the FER2013 label (the data section and the data "
    "effects above give the measured rates). A label is what an annotator perceived in a still "
    "photo, many of them posed or staged; it is not what the person felt. Facial movements are "
    "not reliable, universal read-outs of emotional states: the same feeling shows as "
    "different expressions across people, contexts and cultures, and the same expression "
    "accompanies different feelings (Barrett et al. 2019, 'Emotional expressions reconsidered', "
    "Psychological Science in the Public Interest 20(1)). The models here classify *perceived "
    "facial expressions* into seven categories; their outputs are not emotions, intentions or "
    "traits.")
DO_NOT_DEPLOY = (
    "**Where it should not be deployed.** Do not use this model, or emotion recognition from "
    "faces in general, to make or inform decisions about people: hiring and workplace "
    "monitoring, education and exam proctoring, policing, border control, lie or deception "
    "detection, credit or insurance, surveillance of public spaces, or medical and "
    "psychiatric diagnosis. The EU AI Act (Regulation (EU) 2024/1689) prohibits AI systems that "
    "infer the emotions of people in the workplace and in education institutions, except for "
    "medical or safety reasons (Article 5(1)(f)), and classes other emotion-recognition systems "
    "as high-risk (Annex III, 1(c)). Reasonable uses are research on the method itself, "
    "teaching, and opt-in personal or artistic tools where the person filmed knows and agrees, "
    "sees the output, and nothing is decided about them from it.")


def ethics_short(results: Mapping[str, Mapping]) -> str:
    """The README's short version; the FER+ disagreement rate is read from notebook 01's
    results when they have it."""
    fp = (results.get(DATA_EXPLORATION) or {}).get("ferplus") or {}
    rate = (f" for {fmt(1 - fp['agreement'])} of the {fmt(fp.get('rows_compared'))} faces it "
            "labels (`results/01_data_exploration.json`)" if fp.get("agreement") is not None
            else "")
    return (
        "FER2013 faces were scraped from Google image search without the consent of the people "
        "shown and carry no demographic information, so how the models do for different groups "
        "is unknown. Its labels are one reading of a (often posed) expression, which crowd "
        f"relabelling (FER+) disagrees with{rate}; a label, and a prediction, is a *perceived "
        "expression*, not an emotion the person felt (Barrett et al. 2019). Do not use the "
        "model to decide anything about people: not in hiring, the workplace, education, "
        "policing, border control, lie detection, surveillance or medical diagnosis; the EU AI "
        "Act (Art. 5(1)(f)) prohibits emotion recognition in workplaces and education. "
        "Details: the \"Ethics and limitations\" section of [the report](reports/REPORT.md).")

def ethics_section(results: Mapping[str, Mapping], synthetic: bool) -> list[str]:
    """The report's section: the ethics prose, then the limitations of these results."""
    return (["## Ethics and limitations", "", DATA_AND_CONSENT, "", WHAT_LABELS_MEAN, "",
             DO_NOT_DEPLOY, "", "### Limitations of these results", ""]
            + limitations(results, synthetic))


def limitations(results: Mapping[str, Mapping], synthetic: bool) -> list[str]:
    """What the results files say limits these numbers."""
    out = []
    if synthetic:
        out.append("- The data are synthetic (procedurally drawn faces). The numbers test the "
                   "pipeline; they are not evidence about facial emotion recognition.")
    comp = results.get(COMPARISON) or {}
    rows = comp.get("summary_table", [])
    not_run = [r["model"] for r in rows if r.get("status") != "ok"]
    if not_run:
        out.append(f"- Not run here: {', '.join(not_run)} (see their status above); the "
                   "comparison is incomplete without them.")
    small = [r for r in comp.get("methods_table", []) if r.get("train images")
             and r.get("train images") < (r.get("Training images") or 0)]
    if small:
        out.append("- Some runs used a subsample of Training (see 'train images' in the runs "
                   "table) and few epochs to fit a CPU budget; accuracies are lower bounds for "
                   "their architectures, not their best achievable results.")
    out += [_seeds_line(results.get(BEST_MODELS) or {}),
            "- CPU latency was measured on the machine that ran the study, which may have been "
            "shared with other work; compare latencies within one report only.",
            "- FER2013's faces are low-resolution greyscale crops, mostly frontal; accuracy on "
            "them does not transfer to other populations, poses, lighting or cameras."]
    counts = ((results.get(DATA_EXPLORATION) or {}).get("class_counts") or {})
    train = counts.get("Training") or {}
    total = sum(train.values())
    if total:
        rare = min(train, key=train.get)
        out.append(f"- Class imbalance: the rarest class in Training, {rare}, has "
                   f"{fmt(train[rare])} of {fmt(total)} images ({fmt(train[rare] / total)}); "
                   "accuracy hides its errors, so read the macro-F1 and per-class F1 too "
                   "(`results/01_data_exploration.json`).")
    return out + [""]


def _seeds_line(board: Mapping) -> str:
    """How many seeds stand behind the numbers: one per model unless a recipe has more."""
    multi = [r for r in board.get("seed_table") or [] if r.get("TTA") == "none"]
    if not multi:
        return ("- One seed per model: differences of about a percentage point between models "
                "are within run-to-run variation and should not be read as rankings.")
    recipes = ", ".join(f"`{r.get('recipe')}` ({len(str(r.get('runs', '')).split(', '))} seeds)"
                        for r in multi)
    return (f"- Seeds: {recipes}; every other model has one seed, so differences of about a "
            "percentage point between models are within run-to-run variation and should not "
            "be read as rankings.")
