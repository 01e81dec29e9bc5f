"""The study runner: `python -m fer_study study` executes the notebooks with papermill.

The plan (which stages, with which parameters) comes from :mod:`fer_study.plan` and the
profile (:mod:`fer_study.profiles`). Each executed notebook goes to
``{reports_dir}/notebooks/<stage>.ipynb`` (+ ``.html``) and writes
``{reports_dir}/results/<stage>.json``; at the end the report is rebuilt from those.

Incremental: a stage whose fingerprint (:mod:`fer_study.fingerprint`: notebook, package
code, parameters, data, the results it reads) is unchanged since it last succeeded is
skipped; an interrupted run re-runs only unfinished stages, and training resumes from its
last epoch checkpoint (:func:`fer_study.train.train`). ``--force`` re-runs the selected
stages anyway. papermill and nbconvert are imported only when the runner runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fer_study.errors import StageFailed
from fer_study.fingerprint import code_sha256, data_identity, stage_fingerprint, why_changed
from fer_study.plan import Stage, plan_study
from fer_study.profiles import PROFILES, Profile, get_profile
from fer_study.provenance import REPO_ROOT, write_json
from fer_study.results import MANIFEST, NOTEBOOKS, RESULTS
from fer_study.run_options import (
    DISTRIBUTIONS,
    add_tracking_arguments,
    distribution_settings,
    settings_to_env,
)

# --------------------------------------------------------------------------- execution

@dataclass
class Outcome:
    stage: str
    status: str  # ok | skipped | failed | interrupted
    seconds: float = 0.0
    result_status: str | None = None
    message: str = ""


def _load_manifest(path: Path) -> dict:
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            print(f"warning: unreadable manifest {path}; running every stage", file=sys.stderr)
    return {"stages": {}}


def scrub_notebook(ipynb: Path) -> Any:
    """Take this machine's paths out of an executed notebook's outputs (warnings, printed
    paths, tracebacks name files by absolute path): the executed copies are committed."""
    import nbformat

    from fer_study.provenance import scrub_paths

    nb = nbformat.read(str(ipynb), as_version=4)

    def clean(v):
        if isinstance(v, str):
            return scrub_paths(v, temp=True)
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    for cell in nb.cells:
        for out in cell.get("outputs", []):
            for key in ("text", "traceback", "evalue"):
                if key in out:
                    out[key] = clean(out[key])
            for mime in ("text/plain", "text/html", "text/markdown"):
                if mime in out.get("data", {}):
                    out["data"][mime] = clean(out["data"][mime])
    nbformat.write(nb, str(ipynb))
    return nb


def render_html(ipynb: Path) -> Path:
    """An HTML copy of an executed notebook, next to it."""
    from nbconvert import HTMLExporter

    nb = scrub_notebook(ipynb)
    exporter = HTMLExporter()
    exporter.log.setLevel("ERROR")  # not one warning per figure about missing alt text
    body, _ = exporter.from_notebook_node(nb)
    out = ipynb.with_suffix(".html")
    out.write_text(body)
    return out


def _failure_message(stage: Stage, out_nb: Path, err: Exception) -> str:
    import papermill as pm

    lines = [f"stage {stage.name} failed",
             f"  notebook: {stage.notebook}",
             f"  executed copy (partial, saved for inspection): {out_nb}"]
    if isinstance(err, pm.PapermillExecutionError):
        # The executed copy has papermill's injected-parameters cell after `parameters`.
        src_index = err.cell_index - 1 if err.cell_index > _parameters_index(stage.notebook) \
            else err.cell_index
        lines += [f"  cell: index {src_index} of {stage.notebook.name} (index {err.cell_index} "
                  f"in the executed copy, execution count {err.exec_count})",
                  *_excerpt(err.source, _failing_line(err.traceback)),
                  f"  error: {err.ename}: {err.evalue}"]
    else:
        lines.append(f"  error: {type(err).__name__}: {err}")
    return "\n".join(lines)


def _failing_line(traceback: Sequence[str]) -> int | None:
    """The line of the cell that raised, from IPython's 'Cell In[n], line k' frame."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(traceback or []))
    m = re.search(r"Cell In\[\d+\], line (\d+)", text)
    return int(m.group(1)) if m else None


def _excerpt(source: str, line: int | None, context: int = 2) -> list[str]:
    src = source.splitlines()
    if line is None or not 1 <= line <= len(src):
        return ["  source:", *[f"    | {ln}" for ln in src[:6]]]
    lo, hi = max(1, line - context), min(len(src), line + context)
    return [f"  source (line {line} raised):",
            *[f"  {'>' if i == line else ' '} {i:3d} | {src[i - 1]}" for i in range(lo, hi + 1)]]


def _parameters_index(path: Path) -> int:
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    return next((i for i, c in enumerate(nb.cells)
                 if "parameters" in c.get("metadata", {}).get("tags", [])), -1)


def execute_stage(stage: Stage, out_nb: Path, cwd: Path, progress: bool = True,
                  log_output: bool = False) -> None:
    """Run one notebook with papermill; raise StageFailed naming the notebook and cell."""
    import papermill as pm

    out_nb.parent.mkdir(parents=True, exist_ok=True)
    # papermill records the input path in the executed (committed) notebook: relative, so it
    # names no folder of this machine
    try:
        nb_in = os.path.relpath(stage.notebook)
    except ValueError:  # another drive (Windows)
        nb_in = str(stage.notebook)
    try:
        pm.execute_notebook(nb_in, str(out_nb), parameters=stage.params,
                            kernel_name="python3", progress_bar=progress,
                            log_output=log_output, cwd=str(cwd))
    except KeyboardInterrupt:
        raise
    except Exception as e:  # a cell error, a dead kernel, a kernel that would not start
        if out_nb.is_file():
            try:
                render_html(out_nb)
            except Exception:  # the partial notebook is what matters; its HTML is a bonus
                pass
        raise StageFailed(_failure_message(stage, out_nb, e)) from e


def run_study(profile: str | Profile = "demo", data: str = "synthetic",
              ferplus: str | None = None, runs_dir: str | None = None,
              reports_dir: str | None = None, overrides: Sequence[str] | None = None,
              only: Sequence[str] | None = None, force: bool = False, dry_run: bool = False,
              notebooks_dir: str | os.PathLike | None = None, progress: bool = True,
              log_output: bool = False, report: bool = True, mlflow: str | None = None,
              mlflow_experiment: str | None = None) -> int:
    """Run (or resume) the study; returns a process exit status (0 ok, 1 a stage failed).
    With `mlflow` (a tracking URI or folder) each stage is logged as a run of one experiment
    (default fer-study-<profile>), see fer_study.tracking.log_stage."""
    prof = get_profile(profile)
    reports_dir = reports_dir or prof.reports_dir
    stages = plan_study(profile, data, ferplus, runs_dir, reports_dir, overrides, only,
                        notebooks_dir)
    reports = Path(reports_dir).expanduser()
    results_dir = reports / RESULTS
    manifest_file = results_dir / MANIFEST
    manifest = _load_manifest(manifest_file)
    sizes = stages[0].params.get("synthetic_sizes") if stages else None
    seed = stages[0].params.get("seed", 0) if stages else 0
    data_id = data_identity(data, ferplus, sizes, seed)
    code = code_sha256()
    track = _stage_tracker(mlflow, mlflow_experiment or f"fer-study-{prof.name}", prof.name,
                           data_id)
    print(f"fer-study: profile {prof.name} ({prof.description}; budget "
          f"{prof.budget}), data {data_id['kind']} "
          f"{data_id.get('sha256', data_id.get('listing_sha256', ''))[:12]}".rstrip())
    print(f"  reports -> {reports}   runs -> {stages[0].params.get('runs_dir') if stages else '-'}"
          f"   {len(stages)} stage(s)")
    if prof.name == "full" and not shutil.which("nvidia-smi"):
        print("  warning: the full profile is a GPU protocol; no GPU was found, so expect days")
    for s in stages:
        if s.dropped:
            print(f"  note: {s.notebook.name} declares no parameter(s) {', '.join(s.dropped)}; "
                  f"the profile's values for them are not passed")

    if not dry_run:
        # The report leaves out results files of stages outside the plan (e.g. a backbone
        # that an earlier profile ran): a partial (--only) run keeps the earlier plan.
        plan = [s.name for s in stages]
        manifest["plan"] = sorted(set(manifest.get("plan", [])) | set(plan)) if only else plan
    outcomes: list[Outcome] = []
    t_all = time.perf_counter()
    will_run: set[str] = set()
    for i, stage in enumerate(stages, 1):
        tag = f"[{i}/{len(stages)}] {stage.name}"
        out_nb = reports / NOTEBOOKS / f"{stage.name}.ipynb"
        result_file = results_dir / f"{stage.name}.json"
        fp, parts = stage_fingerprint(stage, data_id, results_dir, code)
        old = manifest["stages"].get(stage.name)
        upstream_runs = any(any(r.startswith(p) for p in stage.reads) for r in will_run)
        fresh = (old and old.get("status") == "ok" and old.get("fingerprint") == fp
                 and out_nb.is_file() and result_file.is_file())
        if dry_run:
            if fresh and not force and not upstream_runs:
                action = "skip (unchanged)"
            else:
                will_run.add(stage.name)
                action = "run (" + ("forced" if force else "upstream will re-run"
                                    if fresh else why_changed(old, parts)) + ")"
            print(f"{tag:<48} {action}")
            print(f"    {json.dumps(stage.params, default=str)}")
            continue
        if fresh and not force:
            if not out_nb.with_suffix(".html").is_file():
                render_html(out_nb)
            rs = _result_status(result_file)
            track(stage, old, result_file, out_nb)
            outcomes.append(Outcome(stage.name, "skipped", 0.0, rs))
            print(f"{tag:<48} skipped (unchanged; last: {rs})", flush=True)
            continue
        reason = "forced" if force and fresh else why_changed(old, parts)
        print(f"{tag:<48} running ({reason}) ...", flush=True)
        entry = {"fingerprint": fp, "parts": parts, "status": "running",
                 "started_utc": _utc(), "output": str(out_nb)}
        manifest["stages"][stage.name] = entry
        manifest.update(profile=prof.name, data=data_id)
        write_json(manifest_file, manifest)
        t0, started = time.perf_counter(), time.time()
        try:
            execute_stage(stage, out_nb, Path.cwd(), progress=progress, log_output=log_output)
            render_html(out_nb)
            if not result_file.is_file() or result_file.stat().st_mtime < started - 1:
                raise StageFailed(f"stage {stage.name} failed\n  notebook: {stage.notebook}\n"
                                  f"  error: it finished without writing {result_file}")
        except KeyboardInterrupt:
            entry.update(status="interrupted", seconds=round(time.perf_counter() - t0, 1))
            write_json(manifest_file, manifest)
            print(f"\n{tag} interrupted; run the same command again to resume", flush=True)
            return 130
        except StageFailed as e:
            dt = time.perf_counter() - t0
            entry.update(status="failed", seconds=round(dt, 1), error=str(e))
            write_json(manifest_file, manifest)
            track(stage, entry, result_file, out_nb)
            print(f"{tag:<48} FAILED after {dt:.1f}s\n{e}", file=sys.stderr, flush=True)
            print("the report was not rebuilt; fix the error and run the same command again "
                  "(finished stages are skipped)", file=sys.stderr)
            return 1
        dt = time.perf_counter() - t0
        rs = _result_status(result_file)
        entry.update(status="ok", seconds=round(dt, 1), finished_utc=_utc(), result_status=rs,
                     fingerprint=stage_fingerprint(stage, data_id, results_dir, code)[0])
        write_json(manifest_file, manifest)
        track(stage, entry, result_file, out_nb)
        outcomes.append(Outcome(stage.name, "ok", dt, rs))
        print(f"{tag:<48} done in {dt:.1f}s ({rs})", flush=True)
    if dry_run:
        return 0
    total = time.perf_counter() - t_all
    ran = sum(o.status == "ok" for o in outcomes)
    print(f"study: {ran} stage(s) run, {len(outcomes) - ran} skipped, {total:.1f}s")
    if report:
        from fer_study.readme import update_readme
        from fer_study.report import build_report

        path = build_report(reports)
        print(f"report: {path} and {path.with_suffix('.html')}")
        # The README's results section is regenerated only from the repository's own
        # reports/ folder, so a study written elsewhere (tests, experiments) leaves it alone.
        readme = REPO_ROOT / "README.md"
        if reports.resolve() == (REPO_ROOT / "reports").resolve() and readme.is_file():
            update_readme(readme, reports_dir=reports)
    return 0


def _stage_tracker(target: str | None, experiment: str, profile: str, data_id: Mapping):
    """track(stage, manifest entry, results file, executed notebook): logs the stage to
    MLflow (once per fingerprint and status); does nothing without a target."""
    if not target:
        return lambda *a: None
    from fer_study.run_options import require_mlflow
    from fer_study.tracking import flatten, log_stage

    require_mlflow()  # before the first stage runs, not after it

    def track(stage: Stage, entry: Mapping, result_file: Path, out_nb: Path) -> None:
        log_stage(target, experiment, stage.name, entry["status"], entry["fingerprint"],
                  stage.params, tags={"fer_study.profile": profile,
                                      **flatten(dict(data_id), "data.")},
                  seconds=entry.get("seconds"), results=result_file,
                  files=(out_nb.with_suffix(".html"),), base=Path.cwd())
    return track


def _result_status(path: Path) -> str:
    try:
        return str(json.loads(path.read_text()).get("status", "ok"))
    except (OSError, json.JSONDecodeError):
        return "unreadable results"


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --------------------------------------------------------------------------- CLI

def _cmd_study(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # inherited by the kernels
    os.environ.update(settings_to_env(distribution_settings(args)))  # training stages
    return run_study(args.profile, data=args.data, ferplus=args.ferplus,
                     runs_dir=args.runs_dir, reports_dir=args.reports_dir,
                     overrides=args.param, only=args.only, force=args.force,
                     dry_run=args.dry_run, log_output=args.log_output, mlflow=args.mlflow,
                     mlflow_experiment=args.mlflow_experiment)


def add_study_subcommand(subparsers: Any) -> argparse.ArgumentParser:
    s = subparsers.add_parser(
        "study", help="run the whole study (notebooks 01-07) and build the report",
        description="Execute the study notebooks with papermill (incremental: unchanged "
                    "stages are skipped), render them to HTML and build REPORT.md in the "
                    "reports folder. "
                    "Profiles: " + "; ".join(f"{k}: {v.description} ({v.budget})"
                                             for k, v in PROFILES.items()))
    s.add_argument("--profile", default="demo", choices=list(PROFILES))
    s.add_argument("--data", default="synthetic",
                   help="'synthetic' (default), a fer2013.csv path or a Kaggle folder root")
    s.add_argument("--ferplus", help="fer2013new.csv (FER+ votes), for the label analysis")
    s.add_argument("--only", nargs="+", metavar="STAGE",
                   help="run only these stages: names, number prefixes (03) or backbones")
    s.add_argument("--force", action="store_true", help="re-run selected stages even if "
                   "unchanged")
    s.add_argument("-p", dest="param", action="append", metavar="[STAGE:]KEY=VALUE",
                   help="set a notebook parameter (JSON value) in every notebook that has "
                        "it, or only in matching stages; repeatable")
    s.add_argument("--reports-dir", default=None,
                   help="default: reports/ for cpu and full, reports/<profile>/ for demo and "
                        "smoke (so the demo never overwrites the committed real-data study)")
    s.add_argument("--runs-dir", help="training run folders (default runs/<profile>)")
    s.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    s.add_argument("--log-output", action="store_true", help="stream notebook output")
    s.add_argument("--distribution", choices=DISTRIBUTIONS,
                   help="data-parallel training for the training stages (see `train -h`)")
    s.add_argument("--devices", metavar="SPEC", help="devices of the training stages: 'all' "
                   "(every GPU), N, 'GPU:0,GPU:1'; implies --distribution auto")
    s.set_defaults(scale_by_replicas=False)  # a what, not a where: set it per run_config
    add_tracking_arguments(s, experiment=None)
    s.set_defaults(func=_cmd_study)
    return s
