"""Markdown and HTML rendering primitives: table cells, tables, and markdown to HTML.

One cell format for every table the project renders (report, README): floats keep 4
significant digits, large numbers get thousands separators, None is a dash.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any


def fmt(v: Any) -> str:
    """One table cell. Floats keep 4 significant digits; None is a dash."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10000 else str(v)
    if isinstance(v, float):
        if v != 0 and abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x) for x in v)
    if isinstance(v, Mapping):
        return ", ".join(f"{k}: {fmt(x)}" for k, x in v.items())
    return str(v).replace("|", "\\|").replace("\n", " ")


def columns_of(rows: Sequence[Mapping]) -> list[str]:
    """Column order: the widest row's keys, then any others in order of appearance."""
    cols: list[str] = []
    for r in sorted(rows, key=len, reverse=True)[:1] + list(rows):
        cols += [k for k in r if k not in cols]
    return cols


def md_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "_(no rows)_"
    cols = list(columns) if columns else columns_of(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;line-height:1.45;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left}
th{background:#f2f2f2} img{max-width:100%;border:1px solid #eee;margin:.4em 0}
code{background:#f5f5f5;padding:0 3px} pre{background:#f5f5f5;padding:.6em;overflow:auto}
blockquote{border-left:4px solid #b00020;margin:0;padding:.2em 1em;background:#fff4f4}
.banner{background:#b00020;color:#fff;padding:10px;font-size:1.3em;font-weight:bold;
text-align:center}
"""


def markdown_to_html(md: str, title: str) -> str:
    import mistune

    body = mistune.create_markdown(escape=False, plugins=["table"])(md)
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")
