"""Files shipped inside the package: the default real-time model and its metadata."""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
DEFAULT_KERAS_MODEL = ASSETS_DIR / "default_model.keras"
DEFAULT_TFLITE_MODEL = ASSETS_DIR / "default_model.tflite"
DEFAULT_MODEL_META = ASSETS_DIR / "default_model.json"  # written by `python -m fer_study ship`
