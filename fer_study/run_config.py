"""The run config: one object per training run, validated before any work and saved next
to its results (config.json), and the command line that recreates it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

from fer_study.augment import AugmentConfig
from fer_study.errors import ConfigError
from fer_study.labels import IMAGE_SIZE, SPLITS
from fer_study.models import REGISTRY
from fer_study.precision import PRECISIONS
from fer_study.provenance import portable
from fer_study.validation import Rule, between, field_problems

# Where and how a run executes, not what it computes: a run resumes when only these changed.
EXECUTION_FIELDS = ("distribution", "devices", "mlflow", "mlflow_experiment")
FineTune = Literal["top_n", "all", "none"]
Optimizer = Literal["adam", "adamw", "sgd"]
Schedule = Literal["cosine", "plateau", "constant"]
Tta = Literal["none", "flip", "tencrop"]


@dataclass
class RunConfig:
    """Everything that defines a training run. Serialised to the run folder as config.json."""

    model: str = "mini_xception"
    data: str = "synthetic"  # "synthetic", a fer2013.csv path, or a Kaggle folder root
    ferplus: str | None = None  # fer2013new.csv, for soft-label supervision
    soft_label_weight: float = 0.0  # blend of FER+ vote distribution into the target
    drop_nonfaces: bool = False  # drop Training rows FER+ calls non-faces (needs ferplus)
    teacher: str | None = None  # distillation: teacher probabilities (.npz from `teacher`)
    teacher_weight: float = 0.0  # blend of the teacher's distribution into the target
    teacher_temperature: float = 1.0  # >1 softens the teacher (softmax(log p / T))
    synthetic_sizes: dict | None = None  # per-split sizes for the synthetic set
    max_train_samples: int | None = None  # stratified subsample of Training (quick runs)
    input_size: int = 48  # < 48: random crops in training, centre / ten crops at test
    model_kwargs: dict = field(default_factory=dict)
    weights: str | None = "default"  # transfer models: "default" = their pretrained set
    epochs: int = 30  # total, all phases included
    frozen_epochs: int = 0  # transfer phase 1: backbone frozen
    fine_tune: FineTune = "top_n"  # transfer phase 2: "top_n", "all" or "none"
    fine_tune_layers: int = 30
    fine_tune_lr_factor: float = 0.1
    batch_size: int = 64
    optimizer: Optimizer = "adam"  # adam | adamw | sgd (Nesterov momentum 0.9)
    lr: float = 1e-3
    weight_decay: float = 1e-4  # adamw / sgd only
    schedule: Schedule = "cosine"  # cosine | plateau | constant
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    class_weight_power: float = 0.0  # 0 = no class weights, 1 = fully balanced
    augment: dict = field(default_factory=lambda: asdict(AugmentConfig()))
    patience: int = 10  # early stopping on the selection split's accuracy; 0 = off
    tta: Tta = "flip"  # reported next to plain predictions
    precision: str = "auto"  # auto | float32 | mixed_bfloat16 (see fer_study.precision)
    seed: int = 0
    run_dir: str = "runs/mini_xception"
    verbose: int = 2
    # Data-parallel training (fer_study.distribute): batch_size is the global batch.
    distribution: str = "none"  # none | auto | mirrored | multi_worker | data_parallel
    devices: str | None = None  # None/"all", "N" (first N GPUs), "GPU:0,GPU:1", "cpu:N"
    scale_by_replicas: bool = False  # linear scaling: batch and lr x replicas
    sync_batch_norm: bool = True  # tf.distribute: batch-norm statistics of the global batch
    mlflow: str | None = None  # MLflow tracking URI or local folder (fer_study.tracking)
    mlflow_experiment: str = "fer-study"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> RunConfig:
        """Check every field's type (from its annotation) and range, and the fields that
        constrain each other, before any data is loaded or file written (fields can be set
        after construction, so train() checks again). Raises ConfigError naming every bad
        field; returns the config for chaining."""
        problems, bad = field_problems(self, _RULES)
        if not bad & {"soft_label_weight", "teacher_weight"} \
                and self.soft_label_weight + self.teacher_weight > 1:
            problems.append(f"soft_label_weight + teacher_weight = "
                            f"{self.soft_label_weight + self.teacher_weight}: must be <= 1 "
                            f"(the rest of the target is the label)")
        if isinstance(self.synthetic_sizes, dict):
            bad = {k: v for k, v in self.synthetic_sizes.items() if k not in SPLITS
                   or isinstance(v, bool) or not isinstance(v, int) or v < 1}
            if bad:
                problems.append(f"synthetic_sizes {bad}: keys must be splits {SPLITS}, "
                                f"values positive ints")
        if isinstance(self.augment, dict):
            unknown = sorted(set(self.augment) - {f.name for f in fields(AugmentConfig)})
            if unknown:
                problems.append(f"augment has unknown key(s) {unknown}; known: "
                                f"{[f.name for f in fields(AugmentConfig)]}")
        if problems:
            raise ConfigError("invalid run config: " + "; ".join(problems))
        return self

    def to_json(self) -> dict:
        """The config as saved (config.json, metrics.json, results): paths as `write_json`
        writes them (:func:`fer_study.provenance.portable`), so a saved config compares equal
        to its object and a committed result never names the machine's paths."""
        return portable(asdict(self))

    @classmethod
    def from_json(cls, d: dict) -> RunConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown config field(s): {sorted(unknown)}")
        return cls(**d)


# Range rules per field: (check, what the value must be). A field without a rule is checked
# by its type annotation alone; a new field gets one here when its range is limited.
_RULES: dict[str, Rule] = {
    "model": (lambda v: v in REGISTRY, f"a registered model ({', '.join(REGISTRY)})"),
    "soft_label_weight": (between(0, 1), "in [0, 1]"),
    "teacher_weight": (between(0, 1), "in [0, 1]"),
    "teacher_temperature": (lambda v: v > 0, "> 0"),
    "max_train_samples": (lambda v: v >= 1, ">= 1 (or null for all)"),
    "input_size": (between(1, IMAGE_SIZE), f"in [1, {IMAGE_SIZE}] (smaller: crops)"),
    "epochs": (lambda v: v >= 1, ">= 1"),
    "frozen_epochs": (lambda v: v >= 0, ">= 0"),
    "fine_tune_layers": (lambda v: v >= 0, ">= 0"),
    "fine_tune_lr_factor": (lambda v: v > 0, "> 0"),
    "batch_size": (lambda v: v >= 1, ">= 1"),
    "lr": (lambda v: v > 0, "> 0"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "warmup_epochs": (lambda v: v >= 0, ">= 0"),
    "label_smoothing": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "class_weight_power": (between(0, 1), "in [0, 1]"),
    "patience": (lambda v: v >= 0, ">= 0 (0 = no early stopping)"),
    "precision": (lambda v: v in PRECISIONS, f"one of {PRECISIONS}"),
    "seed": (lambda v: v >= 0, ">= 0"),
    "verbose": (lambda v: v in (0, 1, 2), "0, 1 or 2"),
}


def reproduce_command(cfg: dict, data_arg: str = "data/fer2013.csv") -> str:
    """The `python -m fer_study train` command line that recreates config `cfg` (a dict),
    with the data file written as `data_arg` (paths differ between machines)."""
    default = RunConfig().to_json()
    direct = {"model": "--model", "epochs": "--epochs", "batch_size": "--batch-size",
              "lr": "--lr", "input_size": "--input-size", "seed": "--seed"}
    parts = ["python -m fer_study train", f"--data {data_arg}"]
    if cfg.get("ferplus"):
        parts.append("--ferplus data/fer2013new.csv")
    for key, flag in direct.items():
        if cfg.get(key, default[key]) != default[key] or key == "model":
            parts.append(f"{flag} {cfg.get(key, default[key])}")
    skip = set(direct) | {"data", "ferplus", "run_dir", "verbose", *EXECUTION_FIELDS}
    for f in RunConfig.__dataclass_fields__.values():
        k = f.name
        if k not in skip and cfg.get(k, default[k]) != default[k]:
            parts.append(f"--set '{k}={json.dumps(cfg[k])}'")
    return " ".join(parts)


def saved_config(cfg_file: Path) -> dict:
    """A run folder's config.json as it compares with ``RunConfig.to_json()``: fields added to
    RunConfig since the run started read as their defaults, file fields as saved now."""
    return portable({**RunConfig().to_json(), **json.loads(Path(cfg_file).read_text())})
