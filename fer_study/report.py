"""Study results on disk, and the report built from them.

Every notebook writes one results file, ``{reports_dir}/results/<stage>.json`` (the stage name
is the notebook's name, plus ``__<backbone>`` for the per-backbone runs of notebook 03), with
its numbers, the data provenance (``Dataset.provenance()``), ``fer_study.provenance.stamp()``
and a ``study`` block (profile, data, command). Figures go to
``{reports_dir}/figures/<stage>_<what>.png``. :class:`Outputs` does this for the notebooks.

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

import html
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fer_study.labels import CHANCE_ACCURACY, EMOTIONS
from fer_study.provenance import REPO_ROOT, stamp, write_json

SYNTHETIC_BANNER = "SYNTHETIC DEMO DATA — not FER2013 results"
HUMAN_ACCURACY = 0.65  # Goodfellow et al. 2013: human accuracy on FER2013 ~65 +/- 5 %
# The study's accuracy goal for its best model, and the best published single network it is
# measured against (both references, not results of this repository).
GOAL_ACCURACY = 0.70
GOAL_MACRO_F1 = 0.65
GOAL_DISGUST_RECALL = 0.40
SOTA_SINGLE = 0.7328
SOTA_SOURCE = ("Khaireddin & Chen 2021, 'Facial Emotion Recognition: State of the Art "
               "Performance on FER2013'")
HUMAN_SOURCE = ("Goodfellow et al. 2013, 'Challenges in representation learning' "
                "(human accuracy ~65 +/- 5 %)")
RESULTS, FIGURES, NOTEBOOKS = "results", "figures", "notebooks"
MANIFEST = "study_manifest.json"
BEST_MODELS = "best_models"  # written by `python -m fer_study leaderboard`
# Keys every results file carries that are bookkeeping, not findings.
META_KEYS = {"notebook", "status", "study", "data", "created_utc", "git", "environment",
             "hardware", "figures", "summary_table", "summary_tables", "reason"}
SECTION_TITLES = {
    "05_gradcam": "Grad-CAM: where the models look",
    "06_robustness_and_optimisation": "Robustness, calibration and optimisation (TFLite)",
    "07_realtime_deployment": "Real-time deployment",
}


# --------------------------------------------------------------------------- paths

def project_path(path: str | os.PathLike) -> Path:
    """A relative path taken from the repository root when run from `notebooks/` (Jupyter
    starts kernels in the notebook's folder, papermill in the caller's), else from the cwd."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    base = Path.cwd()
    if base.name == "notebooks" and (base.parent / "fer_study").is_dir():
        base = base.parent
    return base / p


def data_path(data: str) -> str:
    """The `data` parameter with a relative file path resolved like :func:`project_path`."""
    return data if str(data) == "synthetic" else str(project_path(data))


def results_path(reports_dir: str | os.PathLike, stage: str) -> Path:
    return project_path(reports_dir) / RESULTS / f"{stage}.json"


def run_results_stage(model: str) -> str:
    """The stage (results file stem) that trains `model`: 02 for the baseline, else 03."""
    return "02_baseline_cnn" if model == "baseline_cnn" else f"03_transfer_learning__{model}"


def make_command(profile: str, data: str | None, ferplus: str | None = None,
                 only: str | None = None) -> str:
    """The command that (re)makes a study, or one stage of it."""
    cmd = f"make study PROFILE={profile}"
    if data and str(data) != "synthetic":
        cmd += f" DATA={data}"
    if ferplus:
        cmd += f" FERPLUS={ferplus}"
    if only:
        cmd += f' ARGS="--only {only} --force"'
    return cmd


def is_synthetic(obj: Any) -> bool:
    """True for a synthetic Dataset, its provenance dict, or a results dict made from it."""
    if hasattr(obj, "is_synthetic"):
        return bool(obj.is_synthetic)
    if isinstance(obj, Mapping):
        if "synthetic" in obj:
            return bool(obj["synthetic"])
        if isinstance(obj.get("data"), Mapping):
            return bool(obj["data"].get("synthetic"))
    return False


# --------------------------------------------------------------------------- notebook outputs

class Outputs:
    """One notebook's outputs: banner, figures and its results file.

    >>> out = Outputs("02_baseline_cnn", reports_dir, profile=profile, data=data)
    >>> out.banner(ds); out.savefig(fig, "learning_curves"); out.write({...}, data=ds)
    """

    def __init__(self, stage: str, reports_dir: str | os.PathLike, profile: str,
                 data: str, ferplus: str | None = None) -> None:
        self.stage = stage
        self.reports_dir = project_path(reports_dir)
        self.study = {"profile": profile, "data": str(data), "ferplus": ferplus,
                      "command": make_command(profile, data, ferplus)}
        self.figures: list[str] = []

    @property
    def results_file(self) -> Path:
        return self.reports_dir / RESULTS / f"{self.stage}.json"

    def banner(self, data: Any) -> None:
        """Show the synthetic-data banner (or the data's identity) as the first output.
        `data`: a Dataset, a provenance / results dict, or the `data` parameter string."""
        from IPython.display import display

        if isinstance(data, str):
            data = {"synthetic": data == "synthetic", "dataset": "FER2013", "path": data}
        if is_synthetic(data):
            text = SYNTHETIC_BANNER
            html_text = ('<div style="background:#b00020;color:white;padding:10px;'
                         'font-size:18px;font-weight:bold;text-align:center">'
                         f'{SYNTHETIC_BANNER}</div>')
        else:
            src = data.source if hasattr(data, "source") else data
            digest = str(src.get("sha256") or src.get("pixels_sha256") or "")[:12]
            text = (f"Data: {src.get('dataset', '?')} ({src.get('path', '?')}"
                    f"{', sha256 ' + digest if digest else ''})")
            html_text = f"<p><b>{html.escape(text)}</b></p>"
        display({"text/plain": text, "text/html": html_text}, raw=True)

    def not_run(self, status: str, reason: str, command: str) -> None:
        """A clearly visible box for a stage that could not run (e.g. weights unavailable)."""
        from IPython.display import display

        text = f"{status.upper()}\n{reason}\nTo run it on a connected machine:\n  {command}"
        html_text = (
            '<div style="border:3px solid #e0a800;background:#fff8e1;padding:12px">'
            f'<p style="font-size:17px;font-weight:bold;margin:0 0 6px 0">'
            f'{html.escape(status.upper())}</p><p><b>Reason:</b> {html.escape(reason)}</p>'
            f'<p><b>To run it on a connected machine:</b></p>'
            f'<pre>{html.escape(command)}</pre>'
            '<p>Nothing was trained: a transfer-learning result is never produced from '
            'random weights.</p></div>')
        display({"text/plain": text, "text/html": html_text}, raw=True)

    def savefig(self, fig: Any, what: str, dpi: int = 110) -> Path:
        """Save as ``figures/<stage>_<what>.png``; the figure stays open for inline display."""
        path = self.reports_dir / FIGURES / f"{self.stage}_{what}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        rel = f"{FIGURES}/{path.name}"
        if rel not in self.figures:
            self.figures.append(rel)
        return path

    def write(self, payload: dict, data: Any, status: str = "ok") -> Path:
        """Write the results file: payload + status, figures, data provenance and stamp."""
        prov = data.provenance() if hasattr(data, "provenance") else dict(data)
        out = {"notebook": self.stage, "status": status, **payload,
               "figures": list(self.figures), "study": self.study, "data": prov, **stamp()}
        path = write_json(self.results_file, out)
        print(f"wrote {path}")
        return path


# --------------------------------------------------------------------------- run summaries

def split_names(metrics: dict) -> tuple[str, str, str | None]:
    """(fit, select, report) split names of a training run's metrics.json."""
    p = metrics["protocol"]
    return p["fit"], p["select"], p["report"]


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
        "data": data_identity(data),
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


# --------------------------------------------------------------------------- formatting

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
        row["epochs (pretrained / scratch)"] = f"{fmt(r.get('epochs'))} / {fmt(twin.get('epochs'))}"
        row["train time (s) (pretrained / scratch)"] = (f"{fmt(r.get('train time (s)'))} / "
                                                        f"{fmt(twin.get('train time (s)'))}")
        out.append(row)
    return out


def fmt(v: Any) -> str:
    """One table cell. Floats keep 4 significant digits; None is a dash."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10000 else str(v)
    if isinstance(v, float):
        if v != 0 and abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x) for x in v)
    if isinstance(v, Mapping):
        return ", ".join(f"{k}: {fmt(x)}" for k, x in v.items())
    return str(v).replace("|", "\\|").replace("\n", " ")


def columns_of(rows: Sequence[Mapping]) -> list[str]:
    """Column order: the widest row's keys, then any others in order of appearance."""
    cols: list[str] = []
    for r in sorted(rows, key=len, reverse=True)[:1] + list(rows):
        cols += [k for k in r if k not in cols]
    return cols


def md_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "_(no rows)_"
    cols = list(columns) if columns else columns_of(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def parse_md_table(text: str, after: str) -> list[dict[str, str]]:
    """The first markdown table after the line containing `after` (used by the tests)."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if after in ln)
    i = next(j for j in range(start, len(lines)) if lines[j].startswith("|"))
    header = [c.strip() for c in lines[i].strip("|").split(" | ")]
    rows = []
    for ln in lines[i + 2:]:
        if not ln.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\) \| ", ln.strip()[1:-1].strip())]
        rows.append(dict(zip(header, cells)))
    return rows


# --------------------------------------------------------------------------- reading

def read_results(reports_dir: str | os.PathLike) -> dict[str, dict]:
    """Every results file by stage name (the manifest excluded), sorted by name."""
    d = project_path(reports_dir) / RESULTS
    out = {}
    for f in sorted(d.glob("*.json")) if d.is_dir() else []:
        if f.name == MANIFEST:
            continue
        try:
            out[f.stem] = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{f}: not valid JSON ({e})") from None
    return out


def data_identity(prov: Mapping | None) -> str:
    """A short, comparable name for the data a results file was computed on."""
    if not prov:
        return "unknown"
    if prov.get("synthetic"):
        sizes = prov.get("sizes") or prov.get("split_sizes") or {}
        return (f"synthetic (seed {prov.get('seed')}, sizes "
                f"{'/'.join(str(v) for v in sizes.values())})")
    digest = prov.get("sha256") or prov.get("pixels_sha256") or "?"
    return f"{prov.get('dataset', '?')} {prov.get('format', '')} sha256 {str(digest)[:12]}"


# Results files written by one script only (its default output), for files that predate the
# script recording its own command.
SCRIPT_OUTPUTS = {
    "efficientnet_lite0_conversion":
        "python scripts/verify_efficientnet_lite.py --torch-python PYTHON_WITH_TORCH",
}


def _command(res: Mapping, name: str | None = None) -> str:
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
    return f"_Source: `results/{name}.json`, made by `{_command(res, name)}`._"


# --------------------------------------------------------------------------- report

def build_report(reports_dir: str | os.PathLike,
                 readme: str | os.PathLike | None = None) -> Path:
    """Write ``REPORT.md`` and ``REPORT.html`` in `reports_dir` from its results files, and,
    when `readme` is given, regenerate that file's results section (:func:`update_readme`)."""
    root = project_path(reports_dir)
    results = read_results(root)
    if not results:
        raise FileNotFoundError(f"no results files in {root / RESULTS}; run the study first "
                                f"(make study)")
    md = _render(results, root)
    out = root / "REPORT.md"
    out.write_text(md)
    (root / "REPORT.html").write_text(markdown_to_html(md, title="fer-study report"))
    if readme is not None:
        update_readme(readme, results, root)
    return out


README_BEGIN = "<!-- results:begin -->"
README_END = "<!-- results:end -->"
README_COLUMNS = ("model", "kind", "status", "PublicTest acc", "PrivateTest acc",
                  "PrivateTest macro-F1", "params", "epochs", "train time (s)")
BEST_COLUMNS = ("model", "TTA", "PublicTest acc", "PrivateTest acc", "PrivateTest macro-F1",
                "Disgust recall", "params", "epochs", "train time (min)")


def readme_results(results: dict[str, dict], root: Path) -> str:
    """The README's results section, from the same results files as the report."""
    comp = results.get("04_model_comparison")
    best = results.get(BEST_MODELS)
    out = [f"_Generated by `fer_study.report.update_readme` from `{root.name}/{RESULTS}/*.json` "
           "(re-made by `make study` and `python -m fer_study report`); do not edit by hand. "
           f"Details, data provenance and limitations: [the report]({root.name}/REPORT.md)._",
           ""]
    if comp:
        syn = is_synthetic(comp.get("data") or {})
        if syn:
            out += [f"> **{SYNTHETIC_BANNER}.** These rows come from the synthetic demo set.", ""]
        out += [f"**Study comparison** (`{(comp.get('study') or {}).get('profile', '?')}` "
                f"profile; {data_identity(comp.get('data'))}; selected on "
                f"{comp.get('selection_split')}, reported on {comp.get('report_split')}):", "",
                md_table(comp.get("summary_table", []),
                         [c for c in README_COLUMNS
                          if any(c in r for r in comp.get("summary_table", []))]), ""]
    else:
        out += ["The study has not been run yet (`make study`).", ""]
    if best:
        rows = _best_rows_compact(best)
        out += [f"**Best models** (every run and ensemble under each test-time augmentation, "
                f"{best.get('selection', 'selected on PublicTest')}; "
                f"{data_identity(best.get('data'))}; best TTA per model shown, all rows in "
                f"`{RESULTS}/{BEST_MODELS}.json`):", "",
                md_table(rows, [c for c in BEST_COLUMNS if any(c in r for r in rows)]), ""]
        targets = _target_rows(best)
        if targets:
            line = "Against the study's targets, the selected model: " + "; ".join(
                f"{t['target']} {t['selected model']} (goal {t['goal']}: {t['status']})"
                for t in targets) + "."
            if any(t["status"] != "reached" for t in targets):
                line += " Why it falls short: [the report](reports/REPORT.md)."
            out += [line, ""]
    shipped = _shipped_model()
    if shipped:
        out += [_shipped_line(shipped), ""]
    for name in ("benchmark_realtime", "benchmark_robustness", "benchmark_serve"):
        if results.get(name):
            out += [_benchmark_line(name, results[name]), ""]
    return "\n".join(out).rstrip() + "\n"


def _serve_line(res: Mapping) -> str:
    """The HTTP API's load benchmark (`python -m fer_study benchmark-serve`) in a sentence."""
    phases, machine = res.get("phases") or {}, res.get("machine") or {}
    server, frame = res.get("server") or {}, res.get("frame") or {}
    load = machine.get("load_average_at_start") or [None]
    line = (f"**Serving benchmark** (`{res.get('command')}`; {frame.get('width')}x"
            f"{frame.get('height')} one-face JPEG over 127.0.0.1, {server.get('detector')}, "
            f"{server.get('workers')} worker; 1-min load average {fmt(load[0])} on "
            f"{machine.get('logical_cores')} cores at the start): ")
    parts = []
    for key, p in phases.items():
        lat = p.get("latency_ms") or {}
        if key.startswith("predict_"):
            parts.append(f"`POST /v1/predict` from {p.get('clients')} clients: p50 "
                         f"{fmt(lat.get('p50'))} ms, p95 {fmt(lat.get('p95'))} ms, "
                         f"{fmt(p.get('throughput_rps'))} requests/s, "
                         f"{fmt(p.get('server_cpu_ms_per_request'))} server CPU ms each")
        elif key.startswith("stream_"):
            parts.append(f"`WS /v1/stream` from 1 client: {fmt(p.get('fps'))} FPS, p50 "
                         f"{fmt(lat.get('p50'))} ms")
    line += "; ".join(parts)
    checks = res.get("target_check") or {}
    failed = (checks.get("failed_requests") or {}).get("value")
    mem = res.get("rss_mb_load_phases") or {}
    line += (f"; {fmt(failed)} failed requests; server memory {fmt(mem.get('start_mb'))} -> "
             f"{fmt(mem.get('end_mb'))} MB over the load")
    bad = (checks.get("bad_uploads_answered_4xx_with_message") or {}).get("value")
    if bad is not None:
        line += f"; bad uploads answered 4xx with a message: {bad}"
    missed = [k for k, v in checks.items() if not v.get("met")]
    if missed:
        line += f". Targets not met: {', '.join(missed)}"
    return line + "."


def _benchmark_line(name: str, res: Mapping) -> str:
    """One README sentence per benchmark file, every number read from it."""
    if name == "benchmark_serve":
        return _serve_line(res)
    if name == "benchmark_robustness":
        ours, fer = res.get("ours") or {}, res.get("fer") or {}
        line = (f"**Robustness** (`{res.get('command')}`; {res.get('images')} "
                f"{data_identity(res.get('data'))} {res.get('split')} faces under every "
                f"corruption and severity): the shipped model keeps "
                f"{fmt(ours.get('relative_robustness'))} of its clean accuracy "
                f"{fmt(ours.get('clean_accuracy'))}")
        if fer:
            line += (f"; the `fer` package's classifier keeps "
                     f"{fmt(fer.get('relative_robustness'))} of {fmt(fer.get('clean_accuracy'))}")
        return line + "."
    if res.get("headline"):
        return _realtime_line(res)
    targets = res.get("targets") or {}
    acc = res.get("accuracy") or {}
    runs = [r for r in res.get("runs", []) if (r.get("ours") or {}).get("fps_mean")
            and r.get("faces") == 1 and r.get("threads", 1) == 1]
    line = f"**Real-time benchmark** (`{res.get('command')}`): "
    parts = []
    for r in runs:
        if r.get("fps_ratio_ours_over_fer") is not None:
            parts.append(f"{r.get('faces')} face(s), {r.get('detector', 'haar')}, detect every "
                         f"{r.get('detect_every')}: {fmt(r['ours']['fps_mean'])} FPS, "
                         f"{fmt(r['fps_ratio_ours_over_fer'])}x `fer`")
    line += "; ".join(parts[:4]) if parts else "no FPS comparison with `fer` recorded"
    if acc.get("fer") is not None:
        line += (f". Classifier accuracy on {acc.get('split')}: ours {fmt(acc.get('ours'))}, "
                 f"`fer` {fmt(acc.get('fer'))}")
    missed = [k for k, v in targets.items() if v is False]
    missed += [f"{k}: {kk}" for k, v in targets.items() if isinstance(v, Mapping)
               for kk, vv in v.items() if vv is False]
    if missed:
        line += f". Targets not met: {', '.join(missed)}"
    return line + "."


def _realtime_line(res: Mapping) -> str:
    """The real-time benchmark (recall-set schema): default pipeline vs fer, from the file."""
    h = res["headline"]
    scenes = (res.get("recall") or {}).get("scenes") or {}
    line = f"**Real-time benchmark** (`{res.get('command')}`; 640x480, 1 thread, medians): "
    parts = []
    if h.get("fps_ratio") is not None:
        parts.append(f"default pipeline (YuNet) {fmt(h['ours_fps'])} FPS vs `fer` "
                     f"{fmt(h['fer_fps'])} FPS on a frame with one 80 px face, "
                     f"{fmt(h['fps_ratio'])}x `fer`")
    if h.get("recall_ours") is not None:
        parts.append(f"recall on faces >= 32 px ({scenes.get('frames')} frames of FER2013 "
                     f"{scenes.get('fer2013_split')} faces and the astronaut at 24-320 px): ours "
                     f"{fmt(h['recall_ours'])} ({h['false_positives_ours']} false positives), "
                     f"`fer` {fmt(h['recall_fer'])} ({h['false_positives_fer']})")
        parts.append(f"emotion accuracy end to end over all labelled faces: ours "
                     f"{fmt(h['e2e_accuracy_ours'])}, `fer` {fmt(h['e2e_accuracy_fer'])} (over "
                     f"the faces each found: {fmt(h['e2e_accuracy_detected_ours'])}, "
                     f"{fmt(h['e2e_accuracy_detected_fer'])})")
    like = next((r for r in res.get("runs", []) if r.get("detector") == "haar_min50"
                 and r.get("scene") == h.get("scene") and r.get("detect_every") == 1), None)
    like_recall = (((res.get("recall") or {}).get("results") or {}).get("haar_min50") or {})
    if like and like.get("fps_ratio_medians") is not None:
        parts.append(f"like for like (our Haar at `fer`'s face sizes, `haar_min50`): "
                     f"{fmt(like['ours']['fps_median'])} FPS, {fmt(like['fps_ratio_medians'])}x "
                     f"`fer`, recall {fmt(like_recall.get('recall_ge_32px'))}")
    for d in res.get("detect_every_tradeoff", []):
        run = next((r for r in res.get("runs", []) if r.get("detector") == "yunet"
                    and r.get("scene") == h.get("scene")
                    and r.get("detect_every") == d["detect_every"]), None)
        if d["detect_every"] > 1 and run:
            parts.append(f"`--detect-every {d['detect_every']}`: {fmt(run['ours']['fps_mean'])} "
                         f"FPS (mean; {fmt(run['fps_ratio_ours_over_fer'])}x `fer`), a new face "
                         f"found {fmt(d['delay_frames_mean'])} frames late on average (at most "
                         f"{d['delay_frames_max']})")
    acc = res.get("accuracy") or {}
    if acc.get("fer") is not None:
        parts.append(f"classifier accuracy on {acc.get('split')}'s own crops: ours "
                     f"{fmt(acc.get('ours'))}, `fer` {fmt(acc.get('fer'))}")
    missed = [k for k, v in (res.get("targets") or {}).items() if v is False]
    line += "; ".join(parts) + "."
    if missed:
        line += f" Targets not met: {', '.join(missed)}."
    return line


def update_readme(readme: str | os.PathLike, results: dict[str, dict] | None = None,
                  reports_dir: str | os.PathLike = "reports") -> Path:
    """Replace the text between README_BEGIN and README_END in `readme` with
    :func:`readme_results`. A README without the markers gets a "## Results" section
    appended (with the markers), so it can be regenerated later."""
    root = project_path(reports_dir)
    results = read_results(root) if results is None else results
    path = Path(readme)
    text = path.read_text() if path.is_file() else ""
    body = f"{README_BEGIN}\n{readme_results(results, root)}{README_END}"
    if README_BEGIN in text and README_END in text:
        head, rest = text.split(README_BEGIN, 1)
        text = head + body + rest.split(README_END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Results\n\n" + body + "\n"
    path.write_text(text)
    return path


def _best_rows_compact(best: Mapping) -> list[dict]:
    """One row per run / ensemble: its best TTA mode on PublicTest (the selected row kept)."""
    keep: dict[str, dict] = {}
    for r in best.get("summary_table", []):
        name = str(r["model"]).replace(" (selected)", "")
        cur = keep.get(name)
        if (cur is None or r["model"].endswith("(selected)")
                or (not cur["model"].endswith("(selected)")
                    and r.get("PublicTest acc", 0) > cur.get("PublicTest acc", 0))):
            keep[name] = r
    return list(keep.values())


def _shipped_model() -> dict | None:
    from fer_study.export import DEFAULT_MODEL_META

    try:
        return json.loads(DEFAULT_MODEL_META.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _shipped_line(meta: Mapping) -> str:
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
    return [k for k in results if re.match(r"\d\d_", k) and k not in plan]


def _render(results: dict[str, dict], root: Path) -> str:
    stale = _stale(results, root)
    results = {k: v for k, v in results.items() if k not in stale}
    study_files = {k: v for k, v in results.items() if re.match(r"\d\d_", k)}
    provs = {k: v.get("data") for k, v in study_files.items()}
    synthetic = any(is_synthetic(p or {}) for p in provs.values())
    main = results.get("04_model_comparison") or results.get("01_data_exploration") or \
        next(iter(study_files.values()), next(iter(results.values())))
    study = main.get("study") or {}
    parts: list[str] = ["# fer-study: facial emotion recognition on FER2013 — study report", ""]
    if synthetic:
        parts += [_banner_md(), ""]
    parts += [
        f"Generated by `fer_study.report.build_report` from `results/*.json` "
        f"({len(results)} file{'s' if len(results) != 1 else ''}); no number in this report "
        f"is typed by hand. "
        f"Re-create it with `{_command(main)}`. "
        f"Profile: **{study.get('profile', '?')}**. Code: git "
        f"`{str((main.get('git') or {}).get('commit'))[:12]}`"
        f"{' (uncommitted changes)' if (main.get('git') or {}).get('dirty') else ''}, "
        f"results made {main.get('created_utc', '?')}.", ""]
    idents = {k: data_identity(p) for k, p in provs.items()}
    if len(set(idents.values())) > 1:
        parts += ["> **Warning: the results files come from different data.** They are not "
                  "one study; re-run `make study` to make them consistent.", ">"]
        parts += [f"> - `{k}.json`: {v}" for k, v in idents.items()]
        parts.append("")
    parts += _data_section(results.get("01_data_exploration"), main)
    parts += _methods_section(results.get("04_model_comparison"))
    parts += _results_section(results.get("04_model_comparison"), results)
    if results.get(BEST_MODELS):
        parts += _best_models_section(results[BEST_MODELS])
    for name in sorted(study_files):
        if name[:2] >= "05":
            parts += _generic_section(name, results[name])
    others = [k for k in results if k not in study_files and k != BEST_MODELS]
    if others:
        parts += ["## Other results files", ""]
        for name in others:
            parts += _generic_section(name, results[name], level="###")
    if stale:
        parts += ["## Stale results files (left out)", "",
                  "Not part of the last study plan (left over from an earlier profile or "
                  "stage list), so not used above: "
                  + ", ".join(f"`results/{k}.json`" for k in stale) + ".", ""]
    parts += _limitations(results, synthetic)
    parts += _citation()
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
    out += _figures(res) + [_source("01_data_exploration", res), ""]
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
                _source("04_model_comparison", res), ""]
    return out


def _results_section(res: dict | None, results: dict[str, dict]) -> list[str]:
    out = ["## Results", ""]
    if res is None:
        return out + ["Notebook 04 (model comparison) has not been run.", ""]
    sel, rep = res.get("selection_split"), res.get("report_split")
    out += [f"### Model comparison (selected on {sel}, reported on {rep})", "",
            md_table(res.get("summary_table", [])), "",
            _source("04_model_comparison", res), ""]
    ref = res.get("references") or {}
    majority = _majority_rate(results.get("01_data_exploration"), rep or "PrivateTest")
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
        out += [f"**Best model on {sel}: `{res['best_model']}`** ({sel} accuracy "
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
                        f"{fmt(r[f'{rep} acc scratch'])}, a difference of {d:+.2f} points "
                        f"({'pretraining helped' if d > 0 else 'pretraining did not help'} "
                        "under this budget; one seed each)."]
                for arm in ("pretrained", "scratch"):
                    acc = r.get(f"{rep} acc {arm}")
                    if majority and acc is not None and abs(acc - majority[1]) < 0.005:
                        out += [f"  - The {arm} model's {rep} accuracy is the majority-class "
                                f"rate ({majority[0]}, {fmt(majority[1])}): under this budget "
                                "it did not learn beyond answering the most frequent class."]
        out += [""]
    if res.get("per_class_f1"):
        out += [f"### Per-class F1 on {rep}", "", md_table(res["per_class_f1"]), "",
                _source("04_model_comparison", res), ""]
    out += _figures(res)
    run_figs = [f for k, v in results.items() if k[:2] in ("02", "03")
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


def _target_rows(res: Mapping) -> list[dict]:
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
    rows = _target_rows(res)
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
           f"{fmt(res.get('selected_disgust_recall'))}. Data: {data_identity(res.get('data'))}.",
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
    shipped = _shipped_model()
    if shipped:
        out += ["", _shipped_line(shipped)]
    out += ["", _source(BEST_MODELS, res), ""]
    return out


def _figures(res: Mapping, limit: int = 12) -> list[str]:
    figs = res.get("figures") or []
    out = [f"![{Path(f).stem}]({f})" for f in figs[:limit]]
    if len(figs) > limit:
        out.append("More figures: " + ", ".join(f"[{Path(f).stem}]({f})" for f in figs[limit:]))
    return out + [""] if out else []


def _generic_section(name: str, res: Mapping, level: str = "##") -> list[str]:
    title = SECTION_TITLES.get(name) or res.get("title") or name.replace("_", " ")
    out = [f"{level} {title}", ""]
    if res.get("status") not in (None, "ok"):
        out += [f"Status: **{res['status']}**" + (f" — {res['reason']}" if res.get("reason")
                                                  else ""), ""]
    scalars = [{"key": k, "value": v} for k, v in res.items()
               if k not in META_KEYS and k != "title" and isinstance(v, (int, float, str, bool))
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


def _limitations(results: dict[str, dict], synthetic: bool) -> list[str]:
    out = ["## Limitations", ""]
    if synthetic:
        out.append("- The data are synthetic (procedurally drawn faces). The numbers test the "
                   "pipeline; they are not evidence about facial emotion recognition.")
    comp = results.get("04_model_comparison") or {}
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
    out += ["- One seed per model: differences of about a percentage point between models are "
            "within run-to-run variation and should not be read as rankings.",
            "- CPU latency was measured on the machine that ran the study, which may have been "
            "shared with other work; compare latencies within one report only.",
            "- FER2013 labels are noisy (one annotator per image; compare the FER+ agreement "
            "above when it was computed) and its faces are low-resolution greyscale crops. "
            "Accuracy on it does not transfer to other populations, poses or cameras, and an "
            "expression is not an emotion."]
    counts = ((results.get("01_data_exploration") or {}).get("class_counts") or {})
    train = counts.get("Training") or {}
    total = sum(train.values())
    if total:
        rare = min(train, key=train.get)
        out.append(f"- Class imbalance: the rarest class in Training, {rare}, has "
                   f"{fmt(train[rare])} of {fmt(total)} images ({fmt(train[rare] / total)}); "
                   "accuracy hides its errors, so read the macro-F1 and per-class F1 too "
                   "(`results/01_data_exploration.json`).")
    return out + [""]


def load_citation(path: str | os.PathLike | None = None) -> dict:
    import yaml

    p = Path(path) if path else REPO_ROOT / "CITATION.cff"
    return yaml.safe_load(p.read_text()) if p.is_file() else {}


def _names(people: Iterable[Mapping]) -> list[str]:
    return [a.get("name") or f"{a.get('family-names', '')}, {a.get('given-names', '')}"
            for a in people]


def _authors(people: Iterable[Mapping], limit: int = 3) -> str:
    names = _names(people)
    return "; ".join(names[:limit]) + (" et al." if len(names) > limit else "")


def _citation() -> list[str]:
    cff = load_citation()
    out = ["## How to cite", ""]
    if not cff:
        return out + ["CITATION.cff not found.", ""]
    year = str(cff.get("date-released", ""))[:4]
    # BibTeX: people as "Family, Given" joined by "and"; an organisation in extra braces.
    bib_authors = " and ".join(n if "," in n else f"{{{n}}}"
                               for n in _names(cff.get("authors", [])))
    out += [f"{_authors(cff.get('authors', []))} ({year}). *{cff.get('title')}* (version "
            f"{cff.get('version')}) [software]. {cff.get('repository-code', '')}".rstrip(), "",
            "```bibtex",
            "@software{fer_study,",
            f"  author  = {{{bib_authors}}},",
            f"  title   = {{{{{cff.get('title')}}}}},",
            f"  version = {{{cff.get('version')}}},",
            f"  year    = {{{year}}},",
            f"  license = {{{cff.get('license')}}},",
            "}", "```", "", "Please also cite the data:", ""]
    for ref in cff.get("references", []):
        venue = ref.get("conference", {}).get("name") or ref.get("journal") or ""
        out.append(f"- {_authors(ref.get('authors', []))} ({ref.get('year')}). "
                   f"{ref.get('title')}. {venue}."
                   + (f" doi:{ref['doi']}" if ref.get("doi") else "")
                   + (f" {ref['url']}" if ref.get("url") else ""))
    return out + ["", "(from `CITATION.cff`)", ""]


def _sources(results: dict[str, dict]) -> list[str]:
    rows = [{"file": f"results/{k}.json", "status": v.get("status", "—"),
             "data": data_identity(v.get("data")),
             "made": v.get("created_utc") or v.get("started"),
             "git": str((v.get("git") or {}).get("commit") or "—")[:12],
             "command": _command(v, k)} for k, v in results.items()]
    return ["## Sources", "", md_table(rows), ""]


# --------------------------------------------------------------------------- html

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;line-height:1.45;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left}
th{background:#f2f2f2} img{max-width:100%;border:1px solid #eee;margin:.4em 0}
code{background:#f5f5f5;padding:0 3px} pre{background:#f5f5f5;padding:.6em;overflow:auto}
blockquote{border-left:4px solid #b00020;margin:0;padding:.2em 1em;background:#fff4f4}
.banner{background:#b00020;color:#fff;padding:10px;font-size:1.3em;font-weight:bold;
text-align:center}
"""


def markdown_to_html(md: str, title: str) -> str:
    import mistune

    body = mistune.create_markdown(escape=False, plugins=["table"])(md)
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")


def chance_and_human() -> dict:
    return {"chance": CHANCE_ACCURACY, "human": HUMAN_ACCURACY, "human_source": HUMAN_SOURCE,
            "classes": list(EMOTIONS)}
