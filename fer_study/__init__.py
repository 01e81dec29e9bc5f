"""fer-study: a reproducible facial emotion recognition study on FER2013."""

from fer_study.labels import EMOTIONS, NUM_CLASSES

__version__ = "0.1.0"
__all__ = ["EMOTIONS", "NUM_CLASSES", "__version__"]
