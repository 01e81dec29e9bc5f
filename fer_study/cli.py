"""Command line: `python -m fer_study <command>` (also installed as `fer-study`).

Nothing heavy is imported to build the parser: each command's module (Keras, TensorFlow,
papermill, OpenCV) is imported when that command runs, so `--help` answers at once.
Commands defined in other modules are registered through :data:`COMMANDS`; adding one is
a line there (its module provides an ``add_*`` hook that registers the subparser).

Errors: a :class:`fer_study.errors.FerStudyError` (bad input the user can fix) becomes one
line on stderr and exit status 2; anything else is a bug and keeps its traceback; Ctrl-C
exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path

from fer_study.errors import ConfigError, FerStudyError, ModelError
from fer_study.run_options import (
    add_distribution_arguments,
    add_tracking_arguments,
    distribution_settings,
    require_mlflow,
)

# Commands of other modules: name -> (module, registration hook, one-line help). The module
# is imported only when its command is parsed; the help line is what `--help` lists.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "study": ("fer_study.study", "add_study_subcommand",
              "run the whole study (notebooks 01-07) and build the report"),
    "export": ("fer_study.export", "add_export_subcommand",
               "convert a .keras classifier to TFLite (float32, dynamic, int8)"),
    "webcam": ("fer_study.realtime", "add_realtime_subcommands",
               "live emotion recognition from a camera"),
    "video": ("fer_study.realtime", "add_realtime_subcommands",
              "annotate a video file and/or log it to CSV"),
    "predict": ("fer_study.realtime", "add_realtime_subcommands",
                "classify faces in an image or a folder"),
    "leaderboard": ("fer_study.leaderboard", "add_leaderboard_subcommand",
                    "score finished runs and ensembles; select on PublicTest; write the "
                    "best-model JSON"),
    "data-effects": ("fer_study.data_effects_report", "add_data_effects_subcommand",
                     "measure leaked test faces, FER+ labels and non-faces on the study's "
                     "models; write their JSON"),
    "time-study": ("fer_study.study_timing", "add_time_study_subcommand",
                   "time `make study` for a profile in a fresh clone; write its timing JSON"),
    "runs": ("fer_study.runs", "add_runs_subcommand",
             "train the committed runs of configs/runs/ (resumable)"),
    "ship": ("fer_study.ship", "add_ship_subcommand",
             "package trained runs as the shipped real-time model"),
    "benchmark-training": ("fer_study.throughput", "add_benchmark_training_subcommand",
                           "training img/s of each committed recipe per backend and precision"),
    "serve": ("fer_study.serve", "add_serve_subcommands",
              "the REST + WebSocket API and the browser webcam page"),
    "benchmark-serve": ("fer_study.serve", "add_serve_subcommands",
                        "load-test the API on 127.0.0.1 and write its benchmark JSON"),
    "verify-efficientnet-lite": (
        "fer_study.efficientnet_lite_check", "add_verify_subcommand",
        "check the Keras EfficientNet-Lite0 and its converted weights against PyTorch"),
}
# Commands whose modules still raise built-in errors for bad input (the leaderboard, which
# the lead's branch moves into the study): those are user errors too, until the module
# raises FerStudyError subclasses.
LEGACY_USER_ERRORS: dict[str, tuple[type[Exception], ...]] = {
}


def _parse_value(text: str):
    """`--set key=value` values: JSON where it parses (numbers, true, null, dicts), else str."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def run_config_from_args(args: argparse.Namespace):
    """The RunConfig of a `train` command line: --config, then the direct flags, then
    --set overrides; validated (ConfigError) before anything is loaded or written."""
    from fer_study.train import RunConfig

    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise ConfigError(f"--config {path}: file not found")
        try:
            cfg = RunConfig.from_json(json.loads(path.read_text()))
        except json.JSONDecodeError as e:
            raise ConfigError(f"--config {path}: not valid JSON ({e})") from None
    else:
        cfg = RunConfig()
    changes = {k: v for k, v in {
        "model": args.model, "data": args.data, "ferplus": args.ferplus, "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": args.lr, "input_size": args.input_size,
        "seed": args.seed, "max_train_samples": args.max_train_samples}.items() if v is not None}
    if args.weights is not None:  # "none" is a value: random initialisation
        changes["weights"] = None if args.weights == "none" else args.weights
    names = {f.name for f in fields(cfg)}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or key not in names:
            raise ConfigError(f"--set expects KEY=VALUE with KEY one of {sorted(names)}; "
                              f"got {item!r}")
        current = changes.get(key, getattr(cfg, key))
        value = _parse_value(value)
        changes[key] = {**current, **value} if isinstance(current, dict) and \
            isinstance(value, dict) else value
    if args.run_dir:
        changes["run_dir"] = args.run_dir
    elif not args.config:
        changes["run_dir"] = f"runs/{changes.get('model', cfg.model)}"
    changes.update(distribution_settings(args))
    if args.mlflow:
        require_mlflow()  # fail before loading data and training, not after
        changes.update(mlflow=args.mlflow, mlflow_experiment=args.mlflow_experiment)
    return replace(cfg, **changes)  # replace() validates the result


def _cmd_train(args: argparse.Namespace) -> int:
    cfg = run_config_from_args(args)
    from fer_study.train import train

    result = train(cfg, overwrite=args.overwrite)
    _print_summary(result.metrics, result.run_dir)
    return 0


def _print_summary(metrics: dict, run_dir: Path) -> None:
    data = metrics["data"]
    tag = " (SYNTHETIC demo data, not FER2013)" if data.get("synthetic") else ""
    print(f"\nrun folder: {run_dir}")
    print(f"model {metrics['model']} ({metrics['kind']}), data: {data['dataset']}{tag}")
    print(f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']}, "
          f"selected on {metrics['protocol']['select']}")
    for split, by_tta in metrics["splits"].items():
        for tta, m in by_tta.items():
            print(f"  {split:<12} tta={tta:<8} accuracy {m['accuracy']:.4f}  "
                  f"macro-F1 {m['macro_f1']:.4f}  (n={m['n']})")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from fer_study.data import load_dataset
    from fer_study.evaluate import evaluate_model
    from fer_study.models import load_model
    from fer_study.provenance import stamp, write_json

    model = load_model(args.model)
    ds = load_dataset(args.data)
    out = {"model_file": str(args.model), "data": ds.provenance(), "splits": {}, **stamp()}
    for split in args.splits or ds.splits:
        x, y = ds.split(split)
        out["splits"][split] = evaluate_model(model, x, y, tta=args.tta)
        print(f"{split:<12} accuracy {out['splits'][split]['accuracy']:.4f}  "
              f"macro-F1 {out['splits'][split]['macro_f1']:.4f}")
    if args.output:
        write_json(args.output, out)
        print(f"wrote {args.output}")
    return 0


def _cmd_teacher(args: argparse.Namespace) -> int:
    missing = [str(Path(r) / "best.keras") for r in args.runs
               if not (Path(r) / "best.keras").is_file()]
    if missing:
        raise ModelError(f"teacher member(s) not trained yet: {', '.join(missing)}")
    from fer_study.distill import teacher_probabilities, write_teacher

    t = teacher_probabilities(args.runs, args.data, tta=args.tta, seed=args.seed)
    path = write_teacher(args.output, t)
    print(f"teacher of {len(args.runs)} run(s) on {t['n']} {t['split']} images "
          f"(accuracy there {t['fit_accuracy']:.4f}): {path}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from fer_study.models import REGISTRY

    for name, spec in REGISTRY.items():
        print(f"{name:<22} {spec.kind:<9} {spec.description}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from fer_study.readme import update_readme
    from fer_study.report import build_report

    path = build_report(args.reports_dir)
    if not args.no_readme:
        update_readme(args.readme, reports_dir=args.reports_dir)
    print(f"report: {path} and {path.with_suffix('.html')}"
          + ("" if args.no_readme else f"; results section of {args.readme} regenerated"))
    return 0


def _add_builtin_commands(sub) -> None:
    t = sub.add_parser("train", help="train a model; writes a run folder")
    t.add_argument("--model", help="registered model name (see `models`)")
    t.add_argument("--data", help="'synthetic', a fer2013.csv path, or a Kaggle folder root")
    t.add_argument("--ferplus", help="fer2013new.csv (FER+ votes) for soft labels")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--input-size", type=int, help="model input side (<48: random crops)")
    t.add_argument("--weights", help="transfer models: 'default', 'none' (random "
                                     "initialisation) or a weights file")
    t.add_argument("--max-train-samples", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--config", help="a config.json to start from")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config field, e.g. --set label_smoothing=0.1")
    t.add_argument("--run-dir", help="run folder (default runs/<model>)")
    t.add_argument("--overwrite", action="store_true", help="discard an existing run there")
    add_distribution_arguments(t)
    add_tracking_arguments(t)
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a saved .keras model on a dataset")
    e.add_argument("model")
    e.add_argument("--data", default="synthetic")
    e.add_argument("--splits", nargs="*")
    e.add_argument("--tta", default="none", choices=("none", "flip", "tencrop"))
    e.add_argument("--output", help="write metrics JSON here")
    e.set_defaults(func=_cmd_evaluate)

    d = sub.add_parser("teacher", help="distillation: save the mean probabilities of trained "
                                       "runs on the fit split, for a student's --set teacher=")
    d.add_argument("runs", nargs="+", help="run folders (their best.keras)")
    d.add_argument("--data", required=True, help="the data the student trains on")
    d.add_argument("--tta", default="flip", choices=("none", "flip", "tencrop"))
    d.add_argument("--seed", type=int, default=0, help="the student's seed (folder datasets "
                                                       "hold out a seed-dependent split)")
    d.add_argument("--output", required=True, help="the .npz to write")
    d.set_defaults(func=_cmd_teacher)

    m = sub.add_parser("models", help="list registered models")
    m.set_defaults(func=_cmd_models)

    r = sub.add_parser("report", help="rebuild REPORT.md/html and the README's results "
                                      "section from reports/results/*.json")
    r.add_argument("--reports-dir", default="reports")
    r.add_argument("--readme", default="README.md")
    r.add_argument("--no-readme", action="store_true", help="leave the README alone")
    r.set_defaults(func=_cmd_report)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser for command line `argv`. Another module's command gets its full arguments
    only when `argv` names it (that module is imported); the rest are listed by name and
    help line only."""
    p = argparse.ArgumentParser(prog="fer-study", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    _add_builtin_commands(sub)
    # the first word naming a command is the command; later ones are argument values
    command = next((a for a in argv if a in sub.choices or a in COMMANDS), None)
    loaded = None
    if command in COMMANDS:
        loaded, hook, _ = COMMANDS[command]
        getattr(importlib.import_module(loaded), hook)(sub)
    for name, (module, _, help_line) in COMMANDS.items():
        if module != loaded:
            sub.add_parser(name, help=help_line, add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    user_errors = (FerStudyError, *LEGACY_USER_ERRORS.get(args.command, ()))
    try:
        return int(args.func(args))
    except user_errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
