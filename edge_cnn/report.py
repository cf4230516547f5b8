"""Result tables: one list of row dicts, shown on the terminal and written as JSON/CSV/Markdown."""

from __future__ import annotations

import csv
import io
import os
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


def to_markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    columns = list(columns or columns_of(rows))
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns or columns_of(rows)), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, title: str | None = None) -> None:
    """A rich table on the terminal (plain text when not a TTY)."""
    from rich.console import Console
    from rich.table import Table

    columns = list(columns or columns_of(rows))
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    Console(width=max(100, min(200, 16 * len(columns)))).print(table)


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
