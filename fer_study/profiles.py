"""Study profiles: what each notebook runs with under ``demo``, ``cpu``, ``full`` and ``smoke``.

A :class:`Profile` is frozen data: parameters for every notebook that declares them
(``params``), per notebook (``notebooks``, whose keys are also the stage list) and per
repeated instance (``repeat``: notebook -> (parameter, {value: extra params})). Every value a
notebook needs that depends on the profile lives here, image caps included; a notebook run
by hand with ``max_images = "auto"`` looks its profile's value up here
(:meth:`Profile.value`), so Jupyter and the study agree.

Budgets. Costs measured as CPU time per image on an AMD EPYC core with TF 2.21 (frozen
backbone ~ one forward pass): baseline_cnn 13 ms/train step; VGG16 at 64 px 41 ms frozen,
110 ms fine-tuning its last 8 layers; ResNet50 at 96 px 30 / 80 ms (~0.44x that at 64 px);
MobileNetV2 at 96 px 8 / 11 ms; EfficientNet-Lite0 at 112 px 12 / 18 ms (~0.73x at 96 px),
55 ms when trained from scratch. Wall time on 2 idle cores ~ CPU time / 1.8.

* demo: the synthetic set at 1000/250/250 images; baseline_cnn 3 epochs at 48 px; the
  ImageNet/VGGFace backbones at 48 px for 2 epochs (offline they report "weights
  unavailable" and cost only a kernel start); EfficientNet-Lite0 and its scratch twin at
  48 px, 2 epochs on the same 600 Training images. Graph tracing (~50 s per EfficientNet
  stage) and kernel starts (~9 s per notebook) cost more than the training itself. A fresh
  clone's `make study` (set-up included) measured 9 min 22 s and 9 min 30 s on 2 idle
  cores; README.
* cpu: real FER2013, about 2 h on 2 cores. baseline_cnn: all 28,709 Training images, 10
  epochs, Adam at 1e-3 with a cosine decay (~4,100 CPU-s, a third of the budget; 1e-4, the
  classic Keras example's rate, was still rising at 10 epochs, 0.467 PrivateTest).
  Transfer: every backbone gets the same budget, so their ranking means something: a
  stratified-random 6,000-image Training subsample, 64 px input, 1 frozen + 3 fine-tuning
  epochs (the last 30 layers; VGG16's last 8, its last block), the same cosine schedule,
  selection on the full PublicTest, no test-time flip. VGG16 and VGG16-face ~2,200 CPU-s
  each, ResNet50 ~700, MobileNetV2 and EfficientNet-Lite0 ~150. The EfficientNet-Lite0
  scratch twin: the same images, epochs, input size and schedule, all layers trained from
  the start, with a one-epoch warm-up and BatchNorm momentum 0.9 (what random weights
  need). The committed runs of `configs/leaderboard.json` (`make runs`) join the ranking in
  notebook 04. Notebook 06 prunes the shipped model to three sparsities, each fine-tuned
  one epoch on 8,000 random Training faces, beside an unpruned fine-tune as the control
  (~3-4 min in all). Needs --data path/to/fer2013.csv.
* full: the capstone's GPU protocol: all Training images, backbones at 224x224, a frozen
  warm-up then fine-tuning of all layers, 30 epochs with early stopping; baseline 60 epochs.
  On N GPUs: `study --devices all` (make study ARGS="--devices all") trains each stage
  data-parallel with these batch sizes as global batches, split across the GPUs, at the same
  learning rate: the same protocol, faster (linear scaling is off by default; a stage's
  run_config may set scale_by_replicas). Several machines: each training as
  `python -m fer_study train ... --distribution multi_worker` with TF_CONFIG (README, Scale
  out); the study itself runs on one machine.
* smoke: a pipeline check in a few minutes (tests, CI): numbers are meaningless.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fer_study.errors import ConfigError
from fer_study.results import (
    BASELINE,
    COMPARISON,
    DATA_EXPLORATION,
    GRADCAM,
    REALTIME,
    ROBUSTNESS,
    TRANSFER,
)

__all__ = [
    "AUTO",
    "PROFILES",
    "Profile",
    "TRANSFER_BACKBONES",
    "get_profile",
]

TRANSFER_BACKBONES = ("vggface_vgg16", "vgg16", "resnet50", "mobilenetv2", "efficientnet_lite0",
                      "efficientnet_lite0_scratch")
AUTO = "auto"  # a notebook parameter whose value comes from the profile


@dataclass(frozen=True)
class Profile:
    """One way to run the whole study (see the module docstring for the budgets)."""

    name: str
    notebooks: Mapping[str, Mapping[str, Any]]  # notebook -> its parameters; the stage list
    description: str = ""
    budget: str = "?"
    requires_real_data: bool = False
    runs_dir: str | None = None  # default runs/<name>
    reports_dir: str = "reports"
    params: Mapping[str, Any] = field(default_factory=dict)  # for every notebook declaring them
    repeat: Mapping[str, tuple[str, Mapping[str, Mapping[str, Any]]]] = \
        field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError(f"a profile needs a name, got {self.name!r}")
        if not self.notebooks:
            raise ConfigError(f"profile {self.name!r} runs no notebook")
        unknown = sorted(set(self.repeat) - set(self.notebooks))
        if unknown:
            raise ConfigError(f"profile {self.name!r} repeats notebooks it does not run: "
                              f"{unknown}")

    @property
    def default_runs_dir(self) -> str:
        return self.runs_dir or f"runs/{self.name}"

    def value(self, notebook: str, parameter: str, instance: str | None = None) -> Any:
        """The profile's value of a notebook parameter (instance values first); what a
        notebook's "auto" resolves to. Raises ConfigError when the profile sets none."""
        extra = {}
        if notebook in self.repeat and instance is not None:
            extra = self.repeat[notebook][1].get(instance, {})
        for scope in (extra, self.notebooks.get(notebook, {}), self.params):
            if parameter in scope:
                return scope[parameter]
        raise ConfigError(f"profile {self.name!r} sets no {parameter!r} for {notebook}; "
                          f"give the notebook a value instead of {AUTO!r}")


# The real-data study trains in float32 on every machine, so its numbers do not depend on
# the CPU that reproduces them, until the bf16 parity runs (configs/leaderboard_precision.json)
# show mixed_bfloat16 reaches the same accuracy.
_STUDY_PRECISION = "float32"
_DEMO_SIZES = {"Training": 1000, "PublicTest": 250, "PrivateTest": 250}
_SMOKE_SIZES = {"Training": 140, "PublicTest": 70, "PrivateTest": 70}

PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile(
        name="demo",
        description="synthetic demo data, small models and few epochs",
        budget="<= 10 min on 2 CPU cores",
        runs_dir="runs/demo",
        reports_dir="reports/demo",  # never over the committed real-data study in reports/
        params={"synthetic_sizes": _DEMO_SIZES},
        notebooks={
            DATA_EXPLORATION: {},
            BASELINE: {"epochs": 3, "batch_size": 64, "max_train_samples": None},
            TRANSFER: {"epochs": 2, "frozen_epochs": 1, "fine_tune": "top_n",
                       "fine_tune_layers": 30, "batch_size": 64, "max_train_samples": None},
            COMPARISON: {"latency_calls": 30},
            GRADCAM: {"max_images": 210},
            ROBUSTNESS: {"max_images": 140, "representative_images": 100,
                         "prune_sparsities": [0.5, 0.9], "prune_train_images": 500,
                         "prune_epochs": 1},
            REALTIME: {},
        },
        repeat={TRANSFER: ("backbone", {
            "vggface_vgg16": {"backbone_size": 48}, "vgg16": {"backbone_size": 48},
            "resnet50": {"backbone_size": 48}, "mobilenetv2": {"backbone_size": 48},
            # equal (sub)samples for the pretrained/scratch pair keep their comparison fair
            "efficientnet_lite0": {"backbone_size": 48, "max_train_samples": 600},
            "efficientnet_lite0_scratch": {"backbone_size": 48, "max_train_samples": 600,
                                           "frozen_epochs": 0},
        })},
    ),
    Profile(
        name="cpu",
        description="real FER2013 on a CPU: equal-budget transfer runs at 64 px",
        budget="about 2 h on 2 CPU cores",
        requires_real_data=True,
        runs_dir="runs/cpu",
        notebooks={
            DATA_EXPLORATION: {},
            BASELINE: {"epochs": 10, "batch_size": 64, "max_train_samples": None, "lr": 1e-3,
                       "leaderboard_spec": "configs/leaderboard.json",
                       "run_config": {"precision": _STUDY_PRECISION}},
            TRANSFER: {"epochs": 4, "frozen_epochs": 1, "fine_tune": "top_n",
                       "fine_tune_layers": 30, "batch_size": 64, "max_train_samples": 6000,
                       "backbone_size": 64,
                       "run_config": {"tta": "none", "precision": _STUDY_PRECISION}},
            COMPARISON: {"latency_calls": 100, "leaderboard_spec": "configs/leaderboard.json"},
            GRADCAM: {"max_images": 700},
            ROBUSTNESS: {"max_images": 1000, "representative_images": 300,
                         "prune_train_images": 8000, "prune_epochs": 1},
            REALTIME: {},
        },
        repeat={TRANSFER: ("backbone", {
            "vggface_vgg16": {"fine_tune_layers": 8},
            "vgg16": {"fine_tune_layers": 8},
            "resnet50": {},
            "mobilenetv2": {},
            "efficientnet_lite0": {},
            "efficientnet_lite0_scratch": {"frozen_epochs": 0, "run_config": {
                "tta": "none", "precision": _STUDY_PRECISION, "warmup_epochs": 1}},
        })},
    ),
    Profile(
        name="full",
        description="the capstone GPU protocol: 224x224 backbones, fine-tune all layers",
        budget="hours on one GPU (days on a CPU)",
        requires_real_data=True,
        runs_dir="runs/full",
        notebooks={
            DATA_EXPLORATION: {},
            BASELINE: {"epochs": 60, "batch_size": 64, "max_train_samples": None,
                       "run_config": {"patience": 15},
                       "leaderboard_spec": "configs/leaderboard.json"},
            TRANSFER: {"epochs": 30, "frozen_epochs": 5, "fine_tune": "all",
                       "fine_tune_layers": 0, "batch_size": 64, "max_train_samples": None,
                       "run_config": {"patience": 8}},
            COMPARISON: {"latency_calls": 200, "leaderboard_spec": "configs/leaderboard.json"},
            GRADCAM: {"max_images": 2100},
            ROBUSTNESS: {"max_images": None, "representative_images": 300,
                         "prune_train_images": None, "prune_epochs": 2},
            REALTIME: {},
        },
        repeat={TRANSFER: ("backbone", {
            b: {"backbone_size": 224, **({"frozen_epochs": 0} if b.endswith("_scratch") else {})}
            for b in TRANSFER_BACKBONES})},
    ),
    Profile(
        name="smoke",
        description="pipeline check on a few hundred synthetic images; numbers meaningless",
        budget="a few minutes",
        runs_dir="runs/smoke",
        reports_dir="reports/smoke",
        params={"synthetic_sizes": _SMOKE_SIZES},
        notebooks={
            DATA_EXPLORATION: {"examples_per_class": 4},
            BASELINE: {"epochs": 1, "batch_size": 64, "max_train_samples": None,
                       "run_config": {"tta": "none"}},
            TRANSFER: {"epochs": 2, "frozen_epochs": 1, "fine_tune": "top_n",
                       "fine_tune_layers": 10, "batch_size": 64, "max_train_samples": None,
                       "run_config": {"tta": "none"}},
            COMPARISON: {"latency_calls": 5, "latency_warmup": 2},
            GRADCAM: {"examples_per_class": 1, "cross_check_images": 8, "max_images": 70},
            ROBUSTNESS: {"severities": [2, 5], "tflite_variants": ["float32", "dynamic"],
                         "representative_images": 50, "max_images": 70,
                         "prune_sparsities": [0.75], "prune_train_images": 140,
                         "prune_epochs": 1},
            REALTIME: {"demo_frames": 12, "sample_frames": 2},
        },
        repeat={TRANSFER: ("backbone", {
            "efficientnet_lite0": {"backbone_size": 32},
            "mobilenetv2": {"backbone_size": 32},
        })},
    ),
)}


def get_profile(profile: str | Profile) -> Profile:
    """A profile by name (see :data:`PROFILES`), or a Profile as given (tests, experiments)."""
    if isinstance(profile, Profile):
        return profile
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[profile]
