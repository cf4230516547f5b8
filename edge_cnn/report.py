"""Result tables: one list of row dicts, shown on the terminal and written as JSON/CSV/Markdown.

Rows keep their field names (``size_mb``, ``p50_ms``) in JSON and CSV, where programs read them;
the terminal and Markdown show headings with units (``size (MB)``, ``p50 (ms)``). A verb shows its
key columns at the terminal's width and every column with ``--wide``.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from typing import Any, Sequence

from edge_cnn.io import write_json, write_text


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def columns_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    return columns


# A field name's unit suffix -> how its heading states the unit.
_UNITS = (("_per_s", "{}/s"), ("_mb", "{} (MB)"), ("_ms", "{} (ms)"), ("_pct", "{} (%)"), ("_pp", "{} (pp)"))


def heading(column: str) -> str:
    """The heading people read for a field: ``p50_ms`` -> ``p50 (ms)``, ``images_per_s`` -> ``images/s``.
    A column that is already a heading (capitals or spaces: export's ``Size (MB)``) is kept."""
    if column != column.lower() or " " in column:
        return column
    for suffix, template in _UNITS:
        if column.endswith(suffix) and len(column) > len(suffix):
            return template.format(column[: -len(suffix)].replace("_", " "))
    return column.replace("_", " ")


def terminal_width() -> int:
    """The terminal's columns (``COLUMNS`` first, as the shell sets it); 100 when output is not a terminal."""
    return shutil.get_terminal_size((100, 24)).columns


def to_markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    columns = list(columns or columns_of(rows))
    lines = ["| " + " | ".join(heading(c) for c in columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns or columns_of(rows)), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, title: str | None = None,
                *, wide: bool = False) -> None:
    """A rich table under headings with units.

    ``columns`` (all the rows' fields when None) in order. By default the table fits the terminal:
    a column holding one setting (not a measured float) in every row moves to the caption
    (``provider cpu · batch 1``), the first column wraps inside its cells and the numbers do not
    unless nothing else fits; a single row too wide for the terminal is shown one field per line. ``wide`` (a verb passes it with its
    longer column list) keeps every column at its natural width, wider than the terminal if need be.
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table

    shown = list(columns or columns_of(rows))
    constant = [] if wide or len(rows) < 2 else [
        c for c in shown[1:] if not isinstance(rows[0].get(c), float) and len({_cell(row.get(c)) for row in rows}) == 1]
    shown = [c for c in shown if c not in constant]
    caption = " · ".join(f"{heading(c)} {_cell(rows[0].get(c))}" for c in constant) or None
    width = terminal_width()
    # The wrapping first column keeps room for a word (a model name) rather than shrink to a letter a line.
    first_width = min(16, max([len(heading(shown[0]))] + [len(_cell(row.get(shown[0]))) for row in rows])) if shown else None

    def build(numbers_wrap: bool) -> Table:
        table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, pad_edge=False)
        for index, column in enumerate(shown):
            table.add_column(heading(column), overflow="fold", no_wrap=index > 0 and not numbers_wrap,
                             min_width=first_width if index == 0 else None)
        for row in rows:
            table.add_row(*(_cell(row.get(c)) for c in shown))
        return table

    table = build(numbers_wrap=False)
    natural = Console(width=10_000).measure(table)
    # rich's minimum lets every column wrap; with only the first one wrapping the others need their whole
    # cells, and rich would squeeze the first column (or a whole column) out of sight to make them fit
    unwrapped = (first_width or 0) + sum(_longest(rows, c) for c in shown[1:]) + 2 * len(shown)
    needed = max(natural.minimum, unwrapped)
    if wide:
        width = max(width, natural.maximum)
    elif needed > width and len(rows) == 1:  # one result too wide: one line per field instead
        return print_table([{"field": heading(c), "value": _cell(rows[0].get(c))} for c in shown], title=title)
    elif needed > width:  # too many columns even unwrapped: let every cell wrap rather than vanish
        table = build(numbers_wrap=True)
    Console(width=width).print(table)


def _longest(rows: Sequence[dict[str, Any]], column: str) -> int:
    """Characters of a column's heading or its longest cell, whichever is more."""
    return max([len(heading(column))] + [len(_cell(row.get(column))) for row in rows])


def write_reports(
    rows: Sequence[dict[str, Any]],
    *,
    json_path: str | os.PathLike | None = None,
    csv_path: str | os.PathLike | None = None,
    md_path: str | os.PathLike | None = None,
    columns: Sequence[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the rows to whichever of JSON, CSV and Markdown files are asked for (atomically)."""
    if json_path:
        write_json(json_path, {**(extra or {}), "rows": list(rows)})
    if csv_path:
        write_text(csv_path, to_csv(rows, columns))
    if md_path:
        write_text(md_path, to_markdown(rows, columns))
