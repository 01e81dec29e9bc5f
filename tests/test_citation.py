"""CITATION.cff agrees with pyproject.toml (version, repository URL) and has a release date."""

from __future__ import annotations

import datetime

import fer_study
from fer_study.citation import citation_problems, load_citation, project_metadata

GOOD = {"cff-version": "1.2.0", "message": "cite it", "title": "t", "license": "MIT",
        "authors": [{"name": "x"}], "version": "1.0", "date-released": datetime.date(2026, 1, 2),
        "repository-code": "https://example.org/r"}


def test_committed_citation_agrees_with_pyproject():
    cff, project = load_citation(), project_metadata()
    assert citation_problems(cff, project) == []
    assert project["version"] == fer_study.__version__ == str(cff["version"])


def test_citation_problems_are_found():
    project = {"version": "1.0", "urls": {"Repository": "https://example.org/r"}}
    assert citation_problems(GOOD, project) == []
    bad = {**GOOD, "version": "0.9", "date-released": "someday", "repository-code": None}
    problems = citation_problems(bad, project)
    assert any("version '0.9'" in p for p in problems)
    assert any("date-released 'someday'" in p for p in problems)
    assert any("repository-code None" in p for p in problems)
    # no URL anywhere is consistent; one side only is not
    assert citation_problems({**GOOD, "repository-code": None}, {"version": "1.0"}) == []
    assert citation_problems(GOOD, {"version": "1.0"}) != []
