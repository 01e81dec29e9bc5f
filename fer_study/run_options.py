"""Command-line options for where a training runs and where it is tracked, shared by `train`
and `study`. Kept free of heavy imports: building the CLI parser must stay instant, and MLflow
is imported only when tracking is asked for."""

from __future__ import annotations

from typing import Any

from fer_study.errors import FerStudyError

DISTRIBUTIONS = ("none", "auto", "mirrored", "multi_worker", "data_parallel")
DEFAULT_STORE = "mlruns"  # a local folder: SQLite database + artifacts (fer_study.tracking)
DEFAULT_EXPERIMENT = "fer-study"
INSTALL_HINT = "pip install 'fer-study[tracking]'"


class TrackingError(FerStudyError, RuntimeError):
    """MLflow tracking was asked for and cannot run (not installed, bad target)."""


def require_mlflow() -> Any:
    """The mlflow module, or a TrackingError naming the extra that installs it."""
    try:
        import mlflow
    except ImportError as e:
        raise TrackingError(f"MLflow tracking needs MLflow: {INSTALL_HINT}") from e
    return mlflow


def add_distribution_arguments(parser: Any) -> None:
    """--distribution / --devices / --scale-by-replicas."""
    parser.add_argument("--distribution", choices=DISTRIBUTIONS,
                        help="data-parallel training: auto = MirroredStrategy on TensorFlow "
                             "(MultiWorkerMirroredStrategy when TF_CONFIG names several "
                             "workers), keras.distribution.DataParallel on JAX")
    parser.add_argument("--devices", metavar="SPEC",
                        help="'all' (every GPU), N (the first N GPUs), 'GPU:0,GPU:1', or "
                             "'cpu:N' (the CPU as N virtual devices, to test); implies "
                             "--distribution auto")
    parser.add_argument("--scale-by-replicas", action="store_true",
                        help="linear scaling: batch size and learning rate x replicas "
                             "(default off: --batch-size is the global batch, lr unchanged)")


def distribution_settings(args: Any) -> dict:
    """The RunConfig fields that the distribution options set (none when not given)."""
    out: dict = {}
    if args.devices is not None:
        out["devices"] = args.devices
    if args.distribution is not None:
        out["distribution"] = args.distribution
    elif args.devices is not None:
        out["distribution"] = "auto"
    if args.scale_by_replicas:
        out["scale_by_replicas"] = True
    return out


def add_tracking_arguments(parser: Any, experiment: str = DEFAULT_EXPERIMENT) -> None:
    """--mlflow [URI_OR_FOLDER] and --mlflow-experiment."""
    parser.add_argument("--mlflow", nargs="?", const=DEFAULT_STORE, metavar="URI_OR_FOLDER",
                        help=f"log to MLflow ({INSTALL_HINT}): a local folder (default "
                             f"{DEFAULT_STORE}/) or a tracking URI such as "
                             f"http://127.0.0.1:5000")
    parser.add_argument("--mlflow-experiment", default=experiment, metavar="NAME",
                        help=f"MLflow experiment (default {experiment})")


# The study passes --distribution / --devices to its notebooks' training runs through the
# environment: they say where a run trains, not what it computes, so they change neither a
# stage's fingerprint nor a run's identity (see fer_study.train.EXECUTION_FIELDS).
ENV_SETTINGS = {"distribution": "FER_STUDY_DISTRIBUTION", "devices": "FER_STUDY_DEVICES"}


def settings_to_env(settings: dict) -> dict[str, str]:
    """Environment variables for the distribution settings (as from distribution_settings)."""
    return {env: str(settings[k]) for k, env in ENV_SETTINGS.items() if k in settings}


def settings_from_env() -> dict:
    """The distribution settings a study passed to this notebook kernel, if any."""
    import os

    return {k: os.environ[env] for k, env in ENV_SETTINGS.items() if os.environ.get(env)}
