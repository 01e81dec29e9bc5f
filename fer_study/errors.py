"""One error model: every error the package raises for input a user can fix derives from
:class:`FerStudyError`.

The command line turns exactly these into a one-line message and exit status 2; anything
else is a bug and keeps its traceback. Each class also derives from the built-in error it
was before this base existed (``ValueError``, ``RuntimeError``), so callers that caught
those still work. The classes are re-exported where they are raised (``fer_study.data.
DataError``, ``fer_study.models.WeightsUnavailable``, ``fer_study.export.ExportError``).
"""

from __future__ import annotations

__all__ = [
    "FerStudyError",
    "ConfigError",
    "DataError",
    "ModelError",
    "WeightsUnavailable",
    "ExportError",
    "ResultsError",
    "StageFailed",
]


class FerStudyError(Exception):
    """Base of the errors a user can act on; the message says what was wrong and what to do."""


class ConfigError(FerStudyError, ValueError):
    """A configuration value (a RunConfig field, a profile, a CLI option) that cannot be used;
    raised before any data is loaded or any file is written."""


class DataError(FerStudyError, ValueError):
    """A data file or folder that cannot be used as given; the message says where and why
    (the file and, for a csv, the row)."""


class ModelError(FerStudyError, ValueError):
    """A model file that is missing or cannot be loaded, or a model of the wrong shape."""


class WeightsUnavailable(FerStudyError, RuntimeError):
    """Pretrained weights could not be loaded (offline, file missing, wrong file): the run is
    reported as not run, never trained from random weights under a transfer-learning name."""


class ExportError(FerStudyError, RuntimeError):
    """A model could not be exported or a TFLite model loaded; the message says what to do."""


class ResultsError(FerStudyError, ValueError):
    """Study results that are missing, unreadable or do not follow the results format."""


class StageFailed(FerStudyError, RuntimeError):
    """A study notebook failed; the message names the notebook, the cell and the error."""
