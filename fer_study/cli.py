"""Command line: `python -m fer_study <command>` (also installed as `fer-study`)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from fer_study.data import DataError
from fer_study.run_options import (
    add_distribution_arguments,
    add_tracking_arguments,
    distribution_settings,
    require_mlflow,
)


def _parse_value(text: str):
    """`--set key=value` values: JSON where it parses (numbers, true, null, dicts), else str."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _cmd_train(args: argparse.Namespace) -> int:
    from fer_study.train import RunConfig, train

    cfg = RunConfig.from_json(json.loads(Path(args.config).read_text())) if args.config \
        else RunConfig()
    direct = {"model": args.model, "data": args.data, "ferplus": args.ferplus,
              "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
              "input_size": args.input_size, "seed": args.seed, "weights": args.weights,
              "max_train_samples": args.max_train_samples}
    for k, v in direct.items():
        if v is not None:
            setattr(cfg, k, v)
    names = {f.name for f in fields(cfg)}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or key not in names:
            raise ValueError(f"--set expects KEY=VALUE with KEY one of {sorted(names)}; "
                             f"got {item!r}")
        current = getattr(cfg, key)
        value = _parse_value(value)
        setattr(cfg, key, {**current, **value} if isinstance(current, dict) and
                isinstance(value, dict) else value)
    if args.run_dir:
        cfg.run_dir = args.run_dir
    elif not args.config:
        cfg.run_dir = f"runs/{cfg.model}"
    for k, v in distribution_settings(args).items():
        setattr(cfg, k, v)
    if args.mlflow:
        require_mlflow()  # fail before loading data and training, not after
        cfg.mlflow, cfg.mlflow_experiment = args.mlflow, args.mlflow_experiment
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
    from fer_study.export import load_keras_model
    from fer_study.provenance import stamp, write_json

    model = load_keras_model(args.model)
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
    from fer_study.report import build_report

    path = build_report(args.reports_dir, readme=None if args.no_readme else args.readme)
    print(f"report: {path} and {path.with_suffix('.html')}"
          + ("" if args.no_readme else f"; results section of {args.readme} regenerated"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fer-study", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model; writes a run folder")
    t.add_argument("--model", help="registered model name (see `models`)")
    t.add_argument("--data", help="'synthetic', a fer2013.csv path, or a Kaggle folder root")
    t.add_argument("--ferplus", help="fer2013new.csv (FER+ votes) for soft labels")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--input-size", type=int, help="model input side (<48: random crops)")
    t.add_argument("--weights", help="transfer models: 'default', 'none' or a weights file")
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

    for module, hook in (("fer_study.export", "add_export_subcommand"),
                         ("fer_study.realtime", "add_realtime_subcommands"),
                         ("fer_study.study", "add_study_subcommand"),
                         ("fer_study.leaderboard", "add_leaderboard_subcommand"),
                         ("fer_study.runs", "add_runs_subcommand"),
                         ("fer_study.ship", "add_ship_subcommand"),
                         ("fer_study.throughput", "add_benchmark_training_subcommand"),
                         ("fer_study.serve", "add_serve_subcommands")):
        _register(sub, module, hook)
    return p


def _register(sub, module: str, hook: str) -> None:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:  # a missing dependency inside the module is a real error
            raise
        return
    getattr(mod, hook)(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "weights", None) == "none":
        args.weights = None
    try:
        return args.func(args)
    except (DataError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
