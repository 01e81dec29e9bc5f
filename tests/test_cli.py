"""The command line: a light --help, one error model, every command registered."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fer_study import cli
from fer_study.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_help_imports_no_keras_tensorflow_or_numpy():
    code = ("import sys\nfrom fer_study.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "heavy = {'keras', 'tensorflow', 'numpy', 'cv2', 'papermill'} & set(sys.modules)\n"
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip().endswith("[]"), out
    assert "verify-efficientnet-lite" in out and "leaderboard" in out


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_lazy_commands_register_under_their_names(name):
    sub = next(a for a in cli.build_parser([name])._actions
               if a.dest == "command")
    parser = sub.choices[name]
    assert parser.get_default("func") is not None, name  # the real parser, not the listing


def test_user_errors_are_one_line_bugs_keep_their_traceback(monkeypatch, capsys):
    def bad_input(args):
        raise ConfigError("epochs=-3: must be >= 1")

    monkeypatch.setattr(cli, "_cmd_models", bad_input)
    assert cli.main(["models"]) == 2
    assert capsys.readouterr().err == "error: epochs=-3: must be >= 1\n"

    def bug(args):
        raise ValueError("a bug, not bad input")

    monkeypatch.setattr(cli, "_cmd_models", bug)
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["models"])

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_models", interrupted)
    assert cli.main(["models"]) == 130


def test_errors_derive_from_one_base():
    from fer_study.data import DataError
    from fer_study.errors import FerStudyError
    from fer_study.export import ExportError
    from fer_study.models import WeightsUnavailable
    from fer_study.study import StageFailed

    for cls in (DataError, WeightsUnavailable, ExportError, StageFailed, ConfigError):
        assert issubclass(cls, FerStudyError), cls
    assert issubclass(DataError, ValueError) and issubclass(ExportError, RuntimeError)
