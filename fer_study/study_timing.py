"""How long a study profile takes a user: a fresh clone, `make study`, timed.

``python -m fer_study time-study --profile cpu --data data/fer2013.csv --ferplus
data/fer2013new.csv`` clones this repository's last commit into a temporary folder, copies
the data files into its ``data/``, runs the README's command there (``make study PROFILE=...
DATA=... FERPLUS=...``: creating ``.venv``, installing, every stage) and writes
``reports/results/study_timing_<profile>.json``: the wall time from the user's point of view,
each stage's seconds (from the clone's study manifest), the set-up and overhead left over,
the machine, and how busy it was with anything else while the study ran (the CPU seconds of
the whole machine minus those of the study's processes), so "on idle cores" is checked,
not assumed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fer_study.errors import ConfigError, FerStudyError
from fer_study.fingerprint import data_identity
from fer_study.precision import cpu_flags
from fer_study.provenance import cpu_model, portable, stamp, write_json
from fer_study.results import project_path

__all__ = ["add_time_study_subcommand", "time_study", "timing_command", "timing_line",
           "timing_record"]

# Other processes may use this share of the machine's CPU time during the run and it still
# counts as measured on idle cores (system daemons, the sampling itself).
IDLE_SHARE = 0.05


class TimingError(FerStudyError, RuntimeError):
    """The timed study could not be set up (not a git checkout, a missing data file)."""


def user_command(profile: str, data: str | None, ferplus: str | None) -> list[str]:
    """The README's study command for `profile`, with the data as the clone names it.
    ``--force`` runs every stage: the committed reports/ are a profile's results, and without
    it the stages they already hold for this code and data would be skipped, not timed."""
    cmd = ["make", "study", f"PROFILE={profile}"]
    if data and data != "synthetic":
        cmd.append(f"DATA=data/{Path(data).name}")
    if ferplus:
        cmd.append(f"FERPLUS=data/{Path(ferplus).name}")
    return [*cmd, "ARGS=--force"]


def timing_command(profile: str, data: str | None, ferplus: str | None) -> str:
    """The time-study command line itself, with the data as the user passed it."""
    args = ["python", "-m", "fer_study", "time-study", "--profile", profile]
    for flag, value in (("--data", data), ("--ferplus", ferplus)):
        if value:
            args += [flag, str(value)]
    return shlex.join(args)


def _busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores)."""
    import psutil

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def _children_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def machine() -> dict[str, Any]:
    """The processor, its core count and the flags that change training speed."""
    flags = cpu_flags()
    return {"cpu": cpu_model(), "logical_cores": os.cpu_count(),
            "avx512_bf16": "avx512_bf16" in flags, "amx": "amx_bf16" in flags,
            "python": platform.python_version()}


def data_record(data: str | None, ferplus: str | None) -> dict:
    """What data the timed study ran on, in the form the report's source table reads."""
    ident = data_identity(data or "synthetic", ferplus)
    if ident["kind"] == "synthetic":
        return {"synthetic": True, "sizes": ident["sizes"], "seed": ident["seed"]}
    return {"dataset": "FER2013", "format": Path(str(data)).suffix.lstrip(".") or "folder",
            "path": str(data), **{k: v for k, v in ident.items() if k != "kind"}}


def timing_record(profile: str, command: Sequence[str], commit: str, wall_s: float,
                  returncode: int, manifest: dict | None, other_cpu_s: float | None,
                  study_cpu_s: float | None, load_before: Sequence[float] | None,
                  host: dict | None = None, timed_by: str | None = None) -> dict:
    """The results JSON of one timed study (see the module doc)."""
    stages = [{"stage": name, "seconds": e.get("seconds"), "status": e.get("status"),
               "result": e.get("result_status")}
              for name, e in ((manifest or {}).get("stages") or {}).items()]
    stage_s = sum(s["seconds"] or 0.0 for s in stages)
    host = host or machine()
    cores = host.get("logical_cores") or 1
    share = None if other_cpu_s is None else max(0.0, other_cpu_s) / (wall_s * cores)
    not_run = [s["stage"] for s in stages if s["result"] not in (None, "ok")]
    cmd = " ".join(command)
    return {
        "title": f"Time of the {profile} profile from a fresh clone",
        "status": "ok" if returncode == 0 else "failed",
        "profile": profile,
        "command": timed_by or f"python -m fer_study time-study --profile {profile}",
        "user_command": cmd, "commit": commit,
        "wall_seconds": round(wall_s, 1), "wall_minutes": round(wall_s / 60, 1),
        "stage_seconds": round(stage_s, 1),
        "setup_and_overhead_seconds": round(wall_s - stage_s, 1),
        "returncode": returncode,
        "machine": host, "load_average_before": list(load_before or []),
        "study_cpu_seconds": None if study_cpu_s is None else round(study_cpu_s, 1),
        "other_processes_cpu_seconds": None if other_cpu_s is None else round(other_cpu_s, 1),
        "other_processes_share": None if share is None else round(share, 4),
        "idle": None if share is None else share <= IDLE_SHARE,
        "stages_not_run": not_run,
        "summary_table": [*({"stage": s["stage"], "seconds": s["seconds"],
                             "result": s["result"] or s["status"]} for s in stages),
                          {"stage": "set-up (.venv, install) and overhead",
                           "seconds": round(wall_s - stage_s, 1), "result": ""},
                          {"stage": "total (wall clock)", "seconds": round(wall_s, 1),
                           "result": ""}],
    }


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                          text=True).stdout.strip()


def time_study(profile: str, data: str | None = None, ferplus: str | None = None,
               output: str | os.PathLike | None = None, workdir: str | None = None,
               keep: bool = False, command: Sequence[str] | None = None,
               echo: Callable[[str], None] = print) -> dict:
    """Clone the last commit, copy the data in, run `command` (default: the README's
    ``make study``) there and write the timing JSON. `command` is for tests."""
    root = project_path(".")
    if not (root / ".git").exists():
        raise TimingError(f"{root} is not a git checkout: time-study clones its last commit")
    files = [f for f in (data, ferplus) if f and f != "synthetic"]
    for f in files:
        if not Path(f).is_file():
            raise ConfigError(f"data file not found: {f}")
    commit = _git(root, "rev-parse", "HEAD")
    if _git(root, "status", "--porcelain", "--untracked-files=no"):
        echo("note: uncommitted changes are not in the clone; it runs commit " + commit[:12])
    base = Path(tempfile.mkdtemp(prefix="fer-study-timing-", dir=workdir))
    clone = base / "fc"
    try:
        subprocess.run(["git", "clone", "--quiet", str(root), str(clone)], check=True)
        for f in files:
            shutil.copy2(f, clone / "data" / Path(f).name)
        cmd = list(command) if command else user_command(profile, data, ferplus)
        echo(f"timing `{' '.join(cmd)}` in a fresh clone of {commit[:12]}")
        load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        started = time.time()
        busy0, kids0, t0 = _busy_cpu_seconds(), _children_cpu_seconds(), time.perf_counter()
        with subprocess.Popen(cmd, cwd=clone, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, bufsize=1) as proc:
            for line in proc.stdout:  # the study's own progress lines, passed through
                echo(line.rstrip("\n"))
        wall = time.perf_counter() - t0
        study = _children_cpu_seconds() - kids0
        other = _busy_cpu_seconds() - busy0 - study
        # the manifest this run wrote (the clone also holds the committed one)
        manifests = sorted((p for p in clone.glob("reports/**/study_manifest.json")
                            if p.stat().st_mtime >= started), key=lambda p: p.stat().st_mtime)
        manifest = json.loads(manifests[-1].read_text()) if manifests else None
        res = timing_record(profile, cmd, commit, wall, proc.returncode, manifest, other,
                            study, load, timed_by=portable(timing_command(profile, data,
                                                                           ferplus)))
    finally:
        if keep:
            echo(f"kept the clone: {clone}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    res = {**res, **stamp(), "data": data_record(data, ferplus)}
    out = project_path(output or f"reports/results/study_timing_{profile}.json")
    write_json(out, res)
    echo(f"{res['status']}: {res['wall_minutes']} min wall ({res['stage_seconds']} s in the "
         f"stages); other processes used {fmt_share(res['other_processes_share'])} of the "
         f"machine; wrote {out}")
    return res


def fmt_share(share: float | None) -> str:
    return "?" if share is None else f"{100 * share:.1f}%"


def timing_line(res: Mapping) -> str:
    """The timing in one sentence, for the README and the report."""
    host = res.get("machine") or {}
    idle = {True: "otherwise idle", False: "not idle", None: "idleness not measured"}[
        res.get("idle")]
    line = (f"**Time of the `{res.get('profile')}` profile** (`{res.get('command')}`, which "
            f"clones the commit and runs the README's command there): "
            f"`{res.get('user_command')}` took **{res.get('wall_minutes')} min** from a fresh "
            f"clone of {str(res.get('commit'))[:12]} on {host.get('logical_cores')} cores of "
            f"{host.get('cpu')} ({idle}: other processes used "
            f"{fmt_share(res.get('other_processes_share'))} of its CPU time), of which "
            f"{res.get('stage_seconds')} s in the stages and "
            f"{res.get('setup_and_overhead_seconds')} s creating `.venv`, installing and "
            "starting notebooks")
    if res.get("stages_not_run"):
        line += ("; not run there, so not in the time: " + ", ".join(
            f"`{s}`" for s in res["stages_not_run"]) + " (pretrained weights unavailable "
            "offline; with them each backbone adds its training)")
    if res.get("status") != "ok":
        line += f"; the run **failed** (exit status {res.get('returncode')})"
    return line + "."


# --------------------------------------------------------------------------- command


def add_time_study_subcommand(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("time-study", help="time `make study` for a profile in a fresh clone "
                                          "and write its timing JSON")
    p.add_argument("--profile", default="demo")
    p.add_argument("--data", default=None, help="fer2013.csv (copied into the clone's data/)")
    p.add_argument("--ferplus", default=None, help="fer2013new.csv (copied likewise)")
    p.add_argument("--output", default=None,
                   help="default: reports/results/study_timing_<profile>.json")
    p.add_argument("--workdir", default=None, help="where the clone goes (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the clone afterwards")
    p.set_defaults(func=lambda a: 0 if time_study(
        a.profile, a.data, a.ferplus, a.output, a.workdir, a.keep)["status"] == "ok" else 1)
