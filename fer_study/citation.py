"""How to cite the study: the report's section, read from ``CITATION.cff``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from fer_study.provenance import REPO_ROOT


def load_citation(path: str | os.PathLike | None = None) -> dict:
    import yaml

    p = Path(path) if path else REPO_ROOT / "CITATION.cff"
    return yaml.safe_load(p.read_text()) if p.is_file() else {}


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
    out += [f"{_authors(cff.get('authors', []))} ({year}). *{cff.get('title')}* (version "
            f"{cff.get('version')}) [software]. {cff.get('repository-code', '')}".rstrip(), "",
            "```bibtex",
            "@software{fer_study,",
            f"  author  = {{{bib_authors}}},",
            f"  title   = {{{{{cff.get('title')}}}}},",
            f"  version = {{{cff.get('version')}}},",
            f"  year    = {{{year}}},",
            f"  license = {{{cff.get('license')}}},",
            "}", "```", "", "Please also cite the data:", ""]
    for ref in cff.get("references", []):
        venue = ref.get("conference", {}).get("name") or ref.get("journal") or ""
        out.append(f"- {_authors(ref.get('authors', []))} ({ref.get('year')}). "
                   f"{ref.get('title')}. {venue}."
                   + (f" doi:{ref['doi']}" if ref.get("doi") else "")
                   + (f" {ref['url']}" if ref.get("url") else ""))
    return out + ["", "(from `CITATION.cff`)", ""]
