"""fer-study: a reproducible facial emotion recognition study on FER2013."""

from typing import Any

from fer_study.labels import EMOTIONS, NUM_CLASSES

__version__ = "0.1.0"
__all__ = ["EMOTIONS", "NUM_CLASSES", "EmotionRecognizer", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use: `import fer_study` stays light (no OpenCV, no TFLite).
    if name == "EmotionRecognizer":
        from fer_study.realtime.api import EmotionRecognizer

        return EmotionRecognizer
    raise AttributeError(f"module 'fer_study' has no attribute {name!r}")
