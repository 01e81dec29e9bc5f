"""How to cite the study: the report's section, read from ``CITATION.cff``, and the check that
``CITATION.cff`` agrees with ``pyproject.toml`` (version, repository URL) and has a release
date (:func:`citation_problems`, run by the tests)."""

from __future__ import annotations

import datetime
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

from fer_study.provenance import REPO_ROOT


def load_citation(path: str | os.PathLike | None = None) -> dict:
    import yaml

    p = Path(path) if path else REPO_ROOT / "CITATION.cff"
    return yaml.safe_load(p.read_text()) if p.is_file() else {}


def project_metadata(path: str | os.PathLike | None = None) -> dict:
    """``[project]`` of pyproject.toml: its version and its ``[project.urls]``."""
    p = Path(path) if path else REPO_ROOT / "pyproject.toml"
    return tomllib.loads(p.read_text()).get("project", {}) if p.is_file() else {}


def repository_url(project: Mapping) -> str | None:
    """The repository URL of pyproject's ``[project.urls]`` (Repository, Source or Homepage)."""
    urls = project.get("urls") or {}
    return next((urls[k] for k in ("Repository", "Source", "Homepage") if urls.get(k)), None)


def citation_problems(cff: Mapping, project: Mapping) -> list[str]:
    """How CITATION.cff departs from pyproject.toml, or lacks what a citation needs."""
    problems = []
    if str(cff.get("version")) != str(project.get("version")):
        problems.append(f"CITATION.cff version {cff.get('version')!r} is not pyproject's "
                        f"{project.get('version')!r}")
    date = cff.get("date-released")
    if isinstance(date, str):
        try:
            date = datetime.date.fromisoformat(date)
        except ValueError:
            pass
    if not isinstance(date, datetime.date):
        problems.append(f"CITATION.cff date-released {date!r} is not a YYYY-MM-DD date")
    url = repository_url(project)
    if cff.get("repository-code") != url:
        problems.append(f"CITATION.cff repository-code {cff.get('repository-code')!r} is not "
                        f"pyproject's [project.urls] Repository {url!r}")
    for key in ("title", "authors", "license", "cff-version", "message"):
        if not cff.get(key):
            problems.append(f"CITATION.cff has no {key}")
    return problems


def _names(people: Iterable[Mapping]) -> list[str]:
    return [a.get("name") or f"{a.get('family-names', '')}, {a.get('given-names', '')}"
            for a in people]


def _authors(people: Iterable[Mapping], limit: int = 3) -> str:
    names = _names(people)
    return "; ".join(names[:limit]) + (" et al." if len(names) > limit else "")


def citation_section() -> list[str]:
    """The report's "How to cite" section, from CITATION.cff."""
    cff = load_citation()
    out = ["## How to cite", ""]
    if not cff:
        return out + ["CITATION.cff not found.", ""]
    year = str(cff.get("date-released", ""))[:4]
    # BibTeX: people as "Family, Given" joined by "and"; an organisation in extra braces.
    bib_authors = " and ".join(n if "," in n else f"{{{n}}}"
                               for n in _names(cff.get("authors", [])))
    url = cff.get("repository-code")
    out += [f"{_authors(cff.get('authors', []))} ({year}). *{cff.get('title')}* (version "
            f"{cff.get('version')}, released {cff.get('date-released')}) [software]. "
            f"{url or ''}".rstrip(), "",
            "```bibtex",
            "@software{fer_study,",
            f"  author  = {{{bib_authors}}},",
            f"  title   = {{{{{cff.get('title')}}}}},",
            f"  version = {{{cff.get('version')}}},",
            f"  date    = {{{cff.get('date-released')}}},",
            f"  year    = {{{year}}},",
            *([f"  url     = {{{url}}},"] if url else []),
            f"  license = {{{cff.get('license')}}},",
            "}", "```", ""]
    if not url:
        out += ["(No repository URL is recorded yet: set `[project.urls] Repository` in "
                "`pyproject.toml` and `repository-code` in `CITATION.cff`; the tests check "
                "that they agree.)", ""]
    out += ["Please also cite the data:", ""]
    for ref in cff.get("references", []):
        venue = ref.get("conference", {}).get("name") or ref.get("journal") or ""
        out.append(f"- {_authors(ref.get('authors', []))} ({ref.get('year')}). "
                   f"{ref.get('title')}. {venue}."
                   + (f" doi:{ref['doi']}" if ref.get("doi") else "")
                   + (f" {ref['url']}" if ref.get("url") else ""))
    return out + ["", "(from `CITATION.cff`)", ""]
