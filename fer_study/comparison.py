"""The model comparison's rows, built from training runs' metrics (notebooks 02-04 and the
report): one summary row per run, its methods row, a row for a run that did not happen, and
each pretrained model next to its from-scratch twin."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fer_study.labels import CHANCE_ACCURACY, EMOTIONS
from fer_study.markdown import fmt
from fer_study.results import HUMAN_ACCURACY, HUMAN_SOURCE, describe_data, split_names
from fer_study.runs import runs_command


def run_summary(metrics: dict, tta: str = "none") -> dict:
    """The comparison-table row of a finished training run (metrics.json of train())."""
    fit, select, rep = split_names(metrics)
    s = metrics["splits"]

    def get(split: str | None, key: str) -> float | None:
        return s[split][tta][key] if split and split in s else None

    return {
        "model": metrics["model"],
        "kind": "transfer" if metrics["kind"] == "transfer" and metrics["pretrained_weights"]
        else "scratch",
        "pretrained weights": metrics["pretrained_weights"] or "none (random init)",
        "status": "ok",
        f"{fit} acc": get(fit, "accuracy"),
        f"{select} acc": get(select, "accuracy"),
        f"{rep} acc": get(rep, "accuracy"),
        f"{select} macro-F1": get(select, "macro_f1"),
        f"{rep} macro-F1": get(rep, "macro_f1"),
        "params": metrics["params"]["total"],
        "size (MB)": round(metrics["model_bytes"] / 1e6, 2),
        "train time (s)": metrics["train_seconds"],
        "epochs": metrics["epochs_run"],
    }


def methods_row(metrics: dict) -> dict:
    """The methods-table row of a finished run: data, splits, budget, wall time, hardware."""
    fit, select, rep = split_names(metrics)
    cfg, data, hw = metrics["config"], metrics["data"], metrics.get("hardware") or {}
    return {
        "model": metrics["model"],
        "data": describe_data(data),
        "fit / select / report": f"{fit} / {select} / {rep}",
        "train images": data.get("train_images_used"),
        "Training images": (data.get("split_sizes") or {}).get(fit),
        "input / backbone (px)": f"{cfg['input_size']} / "
                                 f"{cfg.get('model_kwargs', {}).get('backbone_size') or '—'}",
        "epochs run (best)": f"{metrics['epochs_run']} ({metrics['best_epoch']})",
        "frozen epochs": cfg.get("frozen_epochs") if metrics["kind"] == "transfer" else None,
        "batch": cfg.get("batch_size"),
        "lr": cfg.get("lr"),
        "wall time (s)": metrics["train_seconds"],
        "hardware": f"{hw.get('cpu', '?')} x{hw.get('cpu_count', '?')} "
                    f"({hw.get('keras_backend', '?')})",
    }


def not_run_row(model: str, status: str, kind: str = "transfer",
                pretrained: str | None = None) -> dict:
    return {"model": model, "kind": kind, "pretrained weights": pretrained or "—",
            "status": status}


def with_latency(row: dict, latency_ms: float | None) -> dict:
    """`row` with the CPU latency column placed after the size column."""
    out: dict = {}
    for k, v in row.items():
        out[k] = v
        if k == "size (MB)":
            out["CPU latency (ms/img)"] = latency_ms
    out.setdefault("CPU latency (ms/img)", latency_ms)
    return out


def pretrained_vs_scratch(rows: Sequence[Mapping], sel: str = "PublicTest",
                          rep: str = "PrivateTest") -> list[dict]:
    """Each pretrained model next to its from-scratch twin (registry name + ``_scratch``),
    when both ran: accuracies and the difference in percentage points, whichever way it
    goes. Both are trained by the same profile, so data, input size and epochs match."""
    by_name = {r["model"]: r for r in rows}
    out = []
    for r in rows:
        twin = by_name.get(f"{r['model']}_scratch")
        if r.get("kind") != "transfer" or twin is None:
            continue
        row: dict[str, Any] = {"architecture": r["model"],
                               "pretrained weights": r.get("pretrained weights"),
                               "pretrained status": r.get("status"),
                               "scratch status": twin.get("status")}
        for split in (sel, rep):
            a, b = r.get(f"{split} acc"), twin.get(f"{split} acc")
            row[f"{split} acc pretrained"] = a
            row[f"{split} acc scratch"] = b
            row[f"{split} difference (points)"] = (round(100 * (a - b), 2)
                                                  if a is not None and b is not None else None)
        row["verdict"] = _pretraining_verdict(r, twin, rep)
        row["epochs (pretrained / scratch)"] = f"{fmt(r.get('epochs'))} / {fmt(twin.get('epochs'))}"
        row["train time (s) (pretrained / scratch)"] = (f"{fmt(r.get('train time (s)'))} / "
                                                        f"{fmt(twin.get('train time (s)'))}")
        out.append(row)
    return out


LEARNED_MACRO_F1 = 0.10  # one class for every face scores ~0.06 on FER2013's test splits


def _pretraining_verdict(pre: Mapping, scratch: Mapping, rep: str) -> str:
    """What the pair measures. A twin that answers (nearly) one class for every face did not
    train: its gap to the pretrained model measures that failure, not pretraining."""
    a, b = pre.get(f"{rep} acc"), scratch.get(f"{rep} acc")
    fa, fb = pre.get(f"{rep} macro-F1"), scratch.get(f"{rep} macro-F1")
    if a is None or b is None:
        return "not measured: one arm did not run"
    if fb is not None and fb < LEARNED_MACRO_F1:
        return (f"not measured: the scratch twin did not learn (macro-F1 {fb:.3f}, about one "
                "class for every face); no pretraining gain is claimed")
    if fa is not None and fa < LEARNED_MACRO_F1:
        return f"not measured: the pretrained model did not learn (macro-F1 {fa:.3f})"
    d = 100 * (a - b)
    if abs(d) < 1.5:  # ~2 SE of one FER2013 test split's accuracy: within seed noise
        return f"a tie ({d:+.1f} points; one seed each)"
    return (f"pretraining {'helped' if d > 0 else 'hurt'} by {abs(d):.1f} points under this "
            "budget (one seed each)")


def chance_and_human() -> dict:
    return {"chance": CHANCE_ACCURACY, "human": HUMAN_ACCURACY, "human_source": HUMAN_SOURCE,
            "classes": list(EMOTIONS)}


def committed_run_result(run_dir: str, metrics: Mapping) -> dict:
    """A committed run (`configs/runs`, `make runs`) shaped like a training notebook's
    results, so notebooks 02 and 04 show it beside the study's own runs. Its row is named
    for the run folder: several committed runs share a model."""
    name = Path(run_dir).name
    return {"status": "ok", "model": name, "run_dir": run_dir, "committed": True,
            "summary": {**run_summary(dict(metrics)), "model": name},
            "methods": {**methods_row(dict(metrics)), "model": name},
            "protocol": metrics["protocol"], "metrics": metrics["splits"],
            "config": metrics["config"], "data": metrics["data"],
            "command": runs_command([run_dir])}
