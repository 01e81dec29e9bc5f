"""The committed training runs behind the real-data results, trained from their configs.

`configs/runs/<name>.json` holds one `RunConfig` per run (its `run_dir` is `runs/<name>`);
`configs/teachers/<name>.json` names the runs whose averaged predictions a distilled student
learns from (`members`, `tta`, `data`, `output`). `python -m fer_study runs` trains every run
that has no `metrics.json` yet, making each teacher file just before the first student that
needs it; an interrupted run resumes from its last epoch, so the same command continues
across sessions, and a new machine restarts from the committed configs alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fer_study.errors import ConfigError, ModelError

CONFIG_DIR = Path("configs")


@dataclass(frozen=True)
class TeacherSpec:
    name: str
    members: tuple[str, ...]  # run folders
    data: str
    output: str
    tta: str = "flip"


def runs_command(runs: Sequence[str | Path]) -> str:
    """The command that trains committed runs (by their folder names); several are quoted."""
    names = [Path(r).name for r in runs]
    return "make runs NAMES=" + (names[0] if len(names) == 1 else '"' + " ".join(names) + '"')


def run_configs(config_dir: Path = CONFIG_DIR) -> dict[str, dict]:
    """name -> RunConfig dict, for every committed run config."""
    files = sorted((Path(config_dir) / "runs").glob("*.json"))
    out = {}
    for f in files:
        cfg = json.loads(f.read_text())
        if Path(cfg.get("run_dir", "")).name != f.stem:
            raise ConfigError(f"{f}: run_dir {cfg.get('run_dir')!r} must end in the file's "
                             f"name {f.stem!r}, so that run names say what they are")
        out[f.stem] = cfg
    return out


def teacher_specs(config_dir: Path = CONFIG_DIR) -> dict[str, TeacherSpec]:
    """teacher output file -> its spec."""
    out = {}
    for f in sorted((Path(config_dir) / "teachers").glob("*.json")):
        d = json.loads(f.read_text())
        spec = TeacherSpec(f.stem, tuple(d["members"]), d["data"], d["output"],
                           d.get("tta", "flip"))
        out[spec.output] = spec
    return out


def training_order(configs: dict[str, dict], only: list[str] | None = None) -> list[str]:
    """Runs to train: `only` in its order, else plain runs before distilled students."""
    if only:
        unknown = [n for n in only if n not in configs]
        if unknown:
            raise ConfigError(f"no committed config for {unknown}; known: {sorted(configs)}")
        return list(only)
    return sorted(configs, key=lambda n: (bool(configs[n].get("teacher")), n))


def is_finished(cfg: dict) -> bool:
    return (Path(cfg["run_dir"]) / "metrics.json").is_file()


def ensure_teacher(path: str, specs: dict[str, TeacherSpec]) -> None:
    """Make the teacher file `path` from its spec unless it exists."""
    if Path(path).is_file():
        return
    if path not in specs:
        raise ModelError(f"teacher {path} does not exist and no configs/teachers/*.json "
                                f"has it as its output")
    from fer_study.distill import teacher_probabilities, write_teacher

    spec = specs[path]
    print(f"[runs] teacher {spec.name}: {' + '.join(spec.members)} ({spec.tta}) -> {path}")
    write_teacher(path, teacher_probabilities(list(spec.members), spec.data, tta=spec.tta))


def train_runs(only: list[str] | None = None, config_dir: Path = CONFIG_DIR,
               dry_run: bool = False) -> list[str]:
    """Train (or resume) every unfinished committed run; returns the names trained."""
    from fer_study.train import RunConfig, train

    configs = run_configs(config_dir)
    specs = teacher_specs(config_dir)
    done = []
    for name in training_order(configs, only):
        cfg = configs[name]
        if is_finished(cfg):
            print(f"[runs] {name}: finished ({cfg['run_dir']}/metrics.json)")
            continue
        if dry_run:
            print(f"[runs] {name}: to train")
            continue
        if cfg.get("teacher"):
            ensure_teacher(cfg["teacher"], specs)
        print(f"[runs] {name}: training ({cfg['epochs']} epochs, resumes if interrupted)")
        train(RunConfig.from_json(cfg))
        done.append(name)
    return done


def add_runs_subcommand(sub) -> None:
    p = sub.add_parser("runs", help="train the committed runs of configs/runs/ (resumable; "
                                    "makes distillation teachers from configs/teachers/)")
    p.add_argument("names", nargs="*", help="only these runs, in this order (default: all)")
    p.add_argument("--configs", default=str(CONFIG_DIR), help="config folder (default configs)")
    p.add_argument("--dry-run", action="store_true", help="list what would be trained")
    p.set_defaults(func=lambda a: (train_runs(a.names or None, Path(a.configs), a.dry_run),
                                   0)[1])
