"""Training throughput of the committed recipes, per Keras backend and precision, on this
machine: `python -m fer_study benchmark-training` -> reports/results/benchmark_training.json.

Each measurement is a fresh subprocess (a Keras backend is fixed at import) that trains the
recipe's model with its own optimizer, loss and input pipeline (`FerBatches` with the recipe's
augmentation, class weights and crops) on random images of FER2013's size, and times each
training step. The median step time after warm-up gives images per second; speeds are only
compared within one run of this command, since machines are shared and differ.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fer_study.errors import ConfigError
from fer_study.precision import cpu_flags, resolve_precision
from fer_study.provenance import cpu_model, stamp, write_json

BACKENDS = ("tensorflow", "torch", "jax")
PRECISIONS = ("float32", "mixed_bfloat16")
DEFAULT_OUTPUT = "reports/results/benchmark_training.json"


def recipe_key(cfg: dict) -> tuple:
    return (cfg["model"], json.dumps(cfg.get("model_kwargs", {}), sort_keys=True),
            cfg["input_size"], cfg["batch_size"])


def recipes_from_configs(configs: dict[str, dict]) -> dict[str, dict]:
    """One representative config per distinct architecture / input / batch (seeds and
    distillation change nothing about speed)."""
    out: dict[str, dict] = {}
    seen = set()
    for name, cfg in sorted(configs.items()):
        k = recipe_key(cfg)
        if k not in seen:
            seen.add(k)
            out[name] = cfg
    return out


def _worker(cfg: dict, steps: int, warmup: int) -> dict:
    """Runs inside the subprocess: time `steps` training steps of `cfg`."""
    import keras
    import numpy as np

    from fer_study.augment import AugmentConfig, FerBatches, class_weights
    from fer_study.models import build_model
    from fer_study.precision import dtype_policy
    from fer_study.train import RunConfig, _compile

    rc = RunConfig.from_json({k: v for k, v in cfg.items()
                              if k in RunConfig.__dataclass_fields__})
    keras.utils.set_random_seed(0)
    n = (steps + warmup) * rc.batch_size
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 48, 48), dtype=np.uint8)
    labels = np.arange(n) % 7
    cw = class_weights(labels, rc.class_weight_power) if rc.class_weight_power else None
    batches = FerBatches(images, labels, rc.batch_size, rc.input_size,
                         augment=AugmentConfig(**rc.augment) if rc.augment else None,
                         weights=cw, shuffle=True)
    times: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.t)

    with dtype_policy(cfg["_precision"]):
        model = build_model(rc.model, input_size=rc.input_size, **rc.model_kwargs)
        _compile(model, rc, rc.lr)
        t0 = time.perf_counter()
        model.fit(batches, epochs=1, verbose=0, callbacks=[Clock()])
        wall = time.perf_counter() - t0
    step = statistics.median(times[warmup:])
    return {"img_per_s": round(rc.batch_size / step, 1),
            "median_step_ms": round(step * 1000, 2),
            "wall_img_per_s": round(rc.batch_size * steps / max(wall, 1e-9), 1),
            "steps_timed": len(times) - warmup, "params": int(model.count_params())}


def measure(cfg: dict, backend: str, precision: str, steps: int = 20, warmup: int = 3,
            timeout: float = 900) -> dict:
    """One subprocess measurement; {"error": ...} where the backend cannot run it."""
    if importlib.util.find_spec(backend) is None:
        return {"error": f"{backend} is not installed"}
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    payload = json.dumps({"cfg": {**cfg, "_precision": precision}, "steps": steps,
                          "warmup": warmup})
    try:
        p = subprocess.run([sys.executable, "-m", "fer_study.throughput", payload],
                           capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"exit {p.returncode}: {tail[0][:300]}"}
    return json.loads(lines[-1])


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def benchmark_training(configs: dict[str, dict], backends=BACKENDS, precisions=PRECISIONS,
                       steps: int = 20, output: str | None = DEFAULT_OUTPUT,
                       command: str | None = None) -> dict:
    """Measure every recipe under every backend and precision; write the JSON."""
    recipes = recipes_from_configs(configs)
    flags = cpu_flags()
    results = []
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        def tqdm(x, **_):
            return x
    jobs = [(n, b, p) for n in recipes for b in backends for p in precisions]
    for name, backend, prec in tqdm(jobs, desc="training throughput", unit="run"):
        cfg = recipes[name]
        load_before = _load()
        r = measure(cfg, backend, prec, steps=steps)
        results.append({"recipe": name, "model": cfg["model"],
                        "model_kwargs": cfg.get("model_kwargs", {}),
                        "input_size": cfg["input_size"], "batch_size": cfg["batch_size"],
                        "backend": backend, "precision": prec, "load_before": load_before,
                        **r})
    fastest = {}
    for name in recipes:
        ok = [r for r in results if r["recipe"] == name and "img_per_s" in r]
        if ok:
            best = max(ok, key=lambda r: r["img_per_s"])
            tf_rows = {r["precision"]: r["img_per_s"] for r in ok
                       if r["backend"] == "tensorflow"}
            fastest[name] = {"backend": best["backend"], "precision": best["precision"],
                             "img_per_s": best["img_per_s"],
                             "tf_bf16_over_fp32": round(tf_rows["mixed_bfloat16"]
                                                        / tf_rows["float32"], 3)
                             if len(tf_rows) == 2 else None}
    out = {
        "title": "Training throughput",
        "command": command,
        "what": "training images/s (median step after warm-up) with each recipe's optimizer, "
                "loss and augmenting input pipeline on random 48x48 images",
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
                    "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags,
                    "load_average_at_end": _load()},
        "auto_precision_here": resolve_precision("auto"),
        "steps": steps,
        "results": results,
        "fastest": fastest,
        **stamp(),
    }
    if output:
        write_json(output, out)
    return out


def add_benchmark_training_subcommand(sub) -> None:
    p = sub.add_parser("benchmark-training",
                       help="training img/s of each committed recipe per backend and precision")
    p.add_argument("--configs", default="configs", help="config folder (default configs)")
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    p.add_argument("--only", nargs="*", help="only these recipes (config names)")
    p.add_argument("--output", default=DEFAULT_OUTPUT)

    def run(a) -> int:
        from fer_study.runs import run_configs

        if a.steps < 1:
            raise ConfigError(f"--steps must be >= 1, got {a.steps}")
        configs = run_configs(Path(a.configs))
        if a.only:
            configs = {k: v for k, v in configs.items() if k in a.only}
        cmd = "python -m fer_study benchmark-training " + " ".join(sys.argv[2:])
        out = benchmark_training(configs, a.backends, a.precisions, a.steps, a.output,
                                 cmd.strip())
        for r in out["results"]:
            speed = f"{r['img_per_s']:8.1f} img/s" if "img_per_s" in r else r["error"]
            print(f"{r['recipe']:<28} {r['backend']:<11} {r['precision']:<15} {speed}")
        print(f"wrote {a.output}")
        return 0

    p.set_defaults(func=run)


if __name__ == "__main__":  # the subprocess worker of `measure`
    args = json.loads(sys.argv[1])
    print(json.dumps(_worker(args["cfg"], args["steps"], args["warmup"])))
