"""The one notebook API: every study notebook opens with

>>> nb = open_notebook("05_gradcam", globals())

which reads the common parameters from the notebook's namespace (the ``parameters`` cell
papermill fills in), loads the data, shows the synthetic-data banner (or the data's
identity) as the first output, and returns a :class:`StudyNotebook` that saves figures as
``figures/<stage>_<what>.png`` and writes ``results/<stage>.json`` in the results format
(:func:`fer_study.results.write_result`).

The other helpers here are what several notebooks share: resuming a training run, finding
the run folder a later notebook analyses, loading a run's model, and the table and payload of
a finished training run.
"""

from __future__ import annotations

import html
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fer_study.comparison import methods_row, run_summary
from fer_study.errors import ConfigError, ModelError
from fer_study.plan import COMMON_PARAMS
from fer_study.profiles import AUTO, get_profile
from fer_study.provenance import REPO_ROOT, repo_relative, write_json
from fer_study.results import (
    COMPARISON,
    FIGURES,
    RESULTS,
    STAGES,
    SYNTHETIC_BANNER,
    data_path,
    figure_path,
    is_synthetic,
    project_path,
    results_path,
    stage_name,
    study_block,
    write_result,
)
from fer_study.robustness import FER_ROBUSTNESS_COMMAND, FER_ROBUSTNESS_RESULTS

__all__ = [
    "StudyNotebook",
    "open_notebook",
    "run_training",
    "metrics_rows",
    "load_run_model",
    "resolve_model_run",
    "run_info",
    "fer_package_reference",
]


@dataclass
class StudyNotebook:
    """One running study notebook: its parameters, data, figures and results file."""

    notebook: str
    stage: str
    profile: str
    data: str
    ferplus: str | None
    synthetic_sizes: dict | None
    runs_dir: str
    reports_dir: str
    seed: int
    instance: str | None = None  # the repeated parameter's value (notebook 03's backbone)
    ds: Any = None  # the Dataset, when the notebook loads one
    figures: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @property
    def study(self) -> dict:
        return study_block(self.profile, self.data, self.ferplus, self.seed)

    @property
    def results_file(self) -> Path:
        return results_path(self.reports_dir, self.stage)

    def elapsed(self) -> float:
        """Seconds since the notebook opened."""
        return time.perf_counter() - self.started

    def load_data(self) -> Any:
        """The study's Dataset (relative paths taken from the repository root)."""
        from fer_study.data import load_dataset

        ds = load_dataset(data_path(self.data),
                          ferplus=data_path(self.ferplus) if self.ferplus else None,
                          synthetic_sizes=self.synthetic_sizes, seed=self.seed)
        # provenance names the files as the parameters did (relative to the repository), not
        # where this machine keeps them: results files and executed notebooks are committed
        for key, given in (("path", self.data), ("ferplus_path", self.ferplus)):
            if ds.source.get(key) and given:
                ds.source[key] = _as_given(given)
        return ds

    def value(self, name: str, given: Any) -> Any:
        """A size or cap parameter: `given` as it is (a positive int, or None for no cap),
        or for "auto" the profile's value (:meth:`fer_study.profiles.Profile.value`)."""
        if isinstance(given, str) and given == AUTO:
            return get_profile(self.profile).value(self.notebook, name, self.instance)
        if given is not None and (isinstance(given, bool) or not isinstance(given, int)
                                  or given < 1):
            raise ConfigError(f"{name} must be a positive int, None or {AUTO!r}, got {given!r}")
        return given

    def banner(self, data: Any) -> None:
        """Show the synthetic-data banner (or the data's identity) as an output.
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
        path = figure_path(self.reports_dir, self.stage, what)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        rel = f"{FIGURES}/{path.name}"
        if rel not in self.figures:
            self.figures.append(rel)
        return Path(repo_relative(path))  # shown as a cell's output: no machine path

    def read(self, stage: str) -> dict | None:
        """Another stage's results in this study, or None when it has not written any."""
        f = results_path(self.reports_dir, stage)
        return json.loads(f.read_text()) if f.is_file() else None

    def write(self, payload: Mapping, data: Any = None, status: str = "ok") -> Path:
        """Write this stage's results file (validated); `data` defaults to the notebook's
        Dataset and may be a provenance dict."""
        path = write_result(self.reports_dir, self.stage, payload,
                            self.ds if data is None else data, self.study, self.figures,
                            status)
        print(f"wrote {repo_relative(path)}")
        return Path(repo_relative(path))  # shown as a cell's output: no machine path

    def select_model_run(self, model_run: str | os.PathLike | None) -> tuple[Path, str]:
        """The run folder a later notebook analyses (:func:`resolve_model_run`) and its model
        name, printed with the data it is analysed on."""
        run_dir = resolve_model_run(model_run, self.runs_dir, self.reports_dir)
        model = run_info(run_dir).get("model") or run_dir.name
        print(f"model run: {run_dir} ({model})")
        if self.ds is not None:
            print(f"data: {self.ds.source.get('dataset')}, splits {self.ds.split_sizes()}")
        return run_dir, model

    def selection_note(self, model_run: str | os.PathLike | None, run_dir: Path) -> str:
        """How the analysed run was chosen (:func:`selection_note`), printed."""
        note = selection_note(self.read(COMPARISON) or {}, run_dir, given=bool(model_run))
        print(f"chosen: {note}")
        return note

    def write_run(self, model: str, run_dir: str | os.PathLike, metrics: Mapping,
                  rows: list[dict], extra: Mapping | None = None) -> Path:
        """The results of a training notebook (02, 03): its summary and methods rows, the
        metrics table `rows` (:func:`metrics_rows`) and every metric of the run (and
        `extra` keys, e.g. 02's committed runs)."""
        return self.write({**(extra or {}), "model": model, "run_dir": str(run_dir),
                           "summary": run_summary(metrics), "methods": methods_row(metrics),
                           "protocol": metrics["protocol"], "metrics_table": rows,
                           "metrics": metrics["splits"], "config": metrics["config"],
                           "training_hardware": metrics.get("hardware")},
                          data=metrics["data"])


def _as_given(path: str | os.PathLike) -> str:
    """A data parameter as given when relative (it is taken from the repository root), else
    relative to the repository when the file lies inside it."""
    return str(path) if not Path(path).is_absolute() else repo_relative(path)


def open_notebook(notebook: str, namespace: Mapping[str, Any], load_data: bool = True
                  ) -> StudyNotebook:
    """Open a study notebook: read its common parameters from `namespace` (``globals()``),
    load the data and show the banner (unless `load_data` is False: notebook 04 reads the
    training notebooks' results instead, and shows the banner of their data)."""
    missing = [p for p in COMMON_PARAMS if p not in namespace]
    if missing:
        raise ConfigError(f"notebook {notebook} lacks the study parameter(s) {missing}; every "
                          f"study notebook declares {list(COMMON_PARAMS)}")
    spec = STAGES.get(notebook)
    instance = namespace.get(spec.repeat) if spec and spec.repeat else None
    nb = StudyNotebook(notebook, stage_name(notebook, instance),
                       **{p: namespace[p] for p in COMMON_PARAMS}, instance=instance)
    if load_data:
        nb.ds = nb.load_data()
        nb.banner(nb.ds)
    return nb


# --------------------------------------------------------------------------- training runs

def run_training(cfg: Any, dataset: Any = None) -> Any:
    """`train(cfg)`, starting afresh when the run folder holds a run with another config (a
    changed profile or -p value) and resuming an unfinished run with the same config. A run
    that differs only in where its folder was reached from (or its verbosity) is kept."""
    from dataclasses import replace

    from fer_study.run_options import settings_from_env
    from fer_study.train import EXECUTION_FIELDS, saved_config, train

    cfg = replace(cfg, **settings_from_env())  # `study --devices ...`
    cfg.validate()  # before the run folder is touched
    cfg_file = Path(cfg.run_dir) / "config.json"
    overwrite = False
    if cfg_file.is_file():
        # fields added to RunConfig since the run started read as their defaults (as train())
        old = saved_config(cfg_file)
        new = json.loads(json.dumps(cfg.to_json()))
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if set(changed) <= {"run_dir", "verbose", *EXECUTION_FIELDS}:
            if changed:
                write_json(cfg_file, new)
        else:
            print(f"{cfg.run_dir}: the previous run had another config ({', '.join(changed)}); "
                  f"starting a fresh run")
            overwrite = True
    return train(cfg, dataset=dataset, overwrite=overwrite)


def metrics_rows(metrics: Mapping) -> list[dict]:
    """One row per (split, TTA mode) of a run's headline metrics."""
    keys = ("n", "accuracy", "top2_accuracy", "macro_f1", "weighted_f1", "ece")
    return [{"split": s, "tta": t, **{k: m[k] for k in keys}}
            for s, by_tta in metrics["splits"].items() for t, m in by_tta.items()]


def load_run_model(run_dir: str | os.PathLike, name: str = "best.keras") -> Any:
    """A run folder's saved model, for inference (:func:`fer_study.models.load_model`)."""
    from fer_study.models import load_model

    return load_model(project_path(run_dir) / name)


def resolve_model_run(model_run: str | os.PathLike | None, runs_dir: str | os.PathLike,
                      reports_dir: str | os.PathLike) -> Path:
    """The run folder to analyse: `model_run`, else the best run selected on PublicTest by
    notebook 04 (its results' ``best_run_dir``), else ``{runs_dir}/baseline_cnn``. Raises
    ModelError naming what was tried."""
    tried = []
    if model_run:
        candidates = [project_path(model_run)]
    else:
        candidates = []
        comparison = results_path(reports_dir, COMPARISON)
        if comparison.is_file():
            best = json.loads(comparison.read_text()).get("best_run_dir")
            if best:
                candidates.append(project_path(best))
        else:
            tried.append(f"{comparison} (missing)")
        candidates.append(project_path(runs_dir) / "baseline_cnn")
    for c in candidates:
        if (c / "best.keras").is_file():
            return c
        tried.append(f"{c / 'best.keras'} (missing)")
    raise ModelError("no trained model found; tried " + "; ".join(tried) +
                     ". Train one (python -m fer_study train ...) or pass model_run.")


def selection_note(comparison: Mapping, run_dir: str | os.PathLike, given: bool = False) -> str:
    """Why notebooks 05-07 analyse `run_dir`, for their readers: the leaderboard's best single
    network on PublicTest (notebook 04), and, when the leaderboard selected an ensemble, that
    this network is its strongest member standing in for it (an ensemble has no one Grad-CAM
    map, temperature or TFLite file)."""
    if given:
        return "given as the model_run parameter (not this study's PublicTest selection)"
    best = comparison.get("best_run_dir")
    if not best or project_path(best) != project_path(run_dir):
        return "no PublicTest selection (notebook 04 has no results): the fallback baseline run"
    sel = comparison.get("selection_split", "PublicTest")
    note = (f"the best single network on {sel} (notebook 04's leaderboard): "
            f"`{comparison.get('best_model')}`, {sel} accuracy "
            f"{comparison.get('best_selection_accuracy', float('nan')):.4f} without TTA")
    board = comparison.get("leaderboard") or {}
    members = board.get("selected_runs") or []
    if len(members) > 1:
        note += (f". The leaderboard's selected model is the ensemble `{board.get('selected')}` "
                 f"({' + '.join(members)}, TTA {board.get('selected_tta')}); an ensemble has "
                 "no one Grad-CAM map, temperature or TFLite file, so its best member stands "
                 "in for it here")
    return note


def run_info(run_dir: str | os.PathLike) -> dict:
    """Model name and config of a run folder (empty dict if metrics.json is absent)."""
    f = Path(run_dir) / "metrics.json"
    if not f.is_file():
        return {}
    m = json.loads(f.read_text())
    return {"model": m.get("model"), "kind": m.get("kind"),
            "config_data": m.get("config", {}).get("data"),
            "input_size": m.get("config", {}).get("input_size")}


def fer_package_reference(reports_dir: str | os.PathLike, search_repo: bool = True) -> dict:
    """The bar to beat: the ``fer`` package's relative robustness on the same corruption
    suite, as measured by the robustness benchmark into
    ``<reports_dir>/results/benchmark_robustness.json`` (else, with `search_repo`, the
    repository's committed ``reports/results``). ``value`` is None, and ``source`` says how to
    measure it, when there is no such file: the bar is never a typed-in number."""
    name = f"{FER_ROBUSTNESS_RESULTS}.json"
    candidates = [project_path(reports_dir) / RESULTS / name]
    if search_repo:
        candidates.append(REPO_ROOT / "reports" / RESULTS / name)
    for path in candidates:
        if not path.is_file():
            continue
        res = json.loads(path.read_text())
        fer = res.get("fer") or {}
        if fer.get("relative_robustness") is not None:
            data = res.get("data") or {}
            return {"value": float(fer["relative_robustness"]),
                    "clean_accuracy": fer.get("clean_accuracy"),
                    "source": f"measured by `{res.get('command')}` on {res.get('images')} "
                              f"{data.get('dataset', '?')} {res.get('split', '?')} faces, "
                              f"same corruptions and severities",
                    "file": repo_relative(path)}
    return {"value": None, "clean_accuracy": None, "file": None,
            "source": f"not measured here: run `{FER_ROBUSTNESS_COMMAND}`"}


def committed_runs(spec: str | os.PathLike | None, data_sha256: str | None
                   ) -> tuple[dict[str, dict], list[dict]]:
    """The committed runs of a leaderboard spec (configs/leaderboard.json) that have
    finished on the same data as this study, shaped like training-notebook results
    (:func:`fer_study.comparison.committed_run_result`), and those still to train, each with
    the command that trains it. No spec (the demo profile): nothing."""
    if not spec:
        return {}, []
    from fer_study.comparison import committed_run_result
    from fer_study.leaderboard import read_spec
    from fer_study.runs import runs_command

    done, todo = {}, []
    for run in read_spec(project_path(spec))["runs"]:
        f = project_path(run) / "metrics.json"
        if not f.is_file():
            todo.append({"run": run, "command": runs_command([run])})
            continue
        metrics = json.loads(f.read_text())
        sha = (metrics.get("data") or {}).get("sha256")
        if data_sha256 and sha and sha != data_sha256:
            todo.append({"run": run, "command": runs_command([run]),
                         "reason": "trained on other data than this study"})
            continue
        done[Path(run).name] = committed_run_result(run, metrics)
    return done, todo


def study_leaderboard(ds: Any, study_runs: list[str], spec: str | os.PathLike | None,
                      reports_dir: str | os.PathLike, progress: bool = True) -> dict:
    """The study's one ranking (:mod:`fer_study.leaderboard`): the study's own runs, plus on
    real data the runs of the committed spec. With a spec the result is also written where
    the report and README read it (``<reports_dir>/results/best_models.json``, the spec's
    output when reports_dir is reports/), so notebook, report and README cannot disagree."""
    from fer_study.leaderboard import build_leaderboard, leaderboard_from_spec, read_spec

    if spec:
        conf = read_spec(project_path(spec))
        res = leaderboard_from_spec(conf, data=ds, extra_runs=study_runs, progress=progress)
        out = Path(reports_dir) / "results" / Path(conf.get("output") or
                                                    "best_models.json").name
        res["spec"] = str(spec)
        res["command"] = f"python -m fer_study leaderboard --spec {spec} (notebook 04)"
        write_json(project_path(out), res)
        print(f"wrote {out}")
    elif study_runs:
        res = build_leaderboard(study_runs, ds, greedy=True, progress=progress)
        res["runs_not_finished"], res["command"] = [], None
    else:
        return {}
    return res
