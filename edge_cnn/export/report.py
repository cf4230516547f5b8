"""What export reports: one row per planned artifact (OK, WARN or FAILED with its reason), written as
``report.json`` (with the run's summary) and ``report.md`` beside the manifest, and printed by the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_cnn.export.plan import Job
from edge_cnn.report import write_reports

COLUMNS = [
    "Format",
    "Precision",
    "Status",
    "Size (MB)",
    "Gzip (MB)",
    "Test accuracy (%)",
    "Drop (pp)",
    "Agreement (%)",
    "Max abs diff",
    "Latency p50 (ms)",
    "File",
    "Note",
]
KEY_COLUMNS = ["Format", "Precision", "Status", "Size (MB)", "Test accuracy (%)", "Drop (pp)", "Latency p50 (ms)",
               "File", "Note"]  # the terminal's table without --wide; report.md/json keep every column


def artifact_row(job: Job, checked: dict[str, Any], size: int, gzipped: int, file: str) -> dict[str, Any]:
    """The table row of an artifact that was written and checked (sizes in MB = 10^6 bytes)."""
    return {
        "Format": job.format,
        "Precision": job.precision,
        "Status": checked["status"],
        "Size (MB)": size / 1e6,
        "Gzip (MB)": gzipped / 1e6,
        "Test accuracy (%)": checked["accuracy"],
        "Drop (pp)": checked.get("accuracy_drop_pp"),
        "Agreement (%)": checked["agreement"],
        "Max abs diff": checked["max_abs_diff"],
        "Latency p50 (ms)": checked["latency_p50_ms"],
        "File": file,
        "Note": checked["note"],
    }


def failed_row(job: Job, file: str, reason: str) -> dict[str, Any]:
    return {"Format": job.format, "Precision": job.precision, "Status": "FAILED", "File": file, "Note": reason}


def write_export_reports(rows: list[dict[str, Any]], summary: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    """report.json (rows + summary, with the FAILED artifacts and their reasons) and report.md."""
    summary["failed"] = [f"{row['Format']} {row['Precision']}: {row['Note']}" for row in rows if row["Status"] == "FAILED"]
    report_json, report_md = folder / "report.json", folder / "report.md"
    write_reports(rows, json_path=report_json, md_path=report_md, columns=COLUMNS, extra=summary)
    return report_json, report_md
