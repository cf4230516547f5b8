"""``data_report.json``: what the run trained on, and every file it left out and why."""

from __future__ import annotations

import os
from typing import Any

from edge_cnn.data.folder import ScanResult
from edge_cnn.io import write_json


def data_report(scan: ScanResult, splits: dict[str, list[tuple[str, int]]]) -> dict[str, Any]:
    per_split = {
        split: {"images": len(items), "per_class": scan.class_counts(items)} for split, items in splits.items()
    }
    return {
        "root": str(scan.root),
        "classes": list(scan.classes),
        "presplit": scan.presplit is not None,
        "counts": {
            "images": len(scan.items),
            "skipped": len(scan.skipped),
            "per_class": scan.class_counts(),
        },
        "splits": per_split,
        "skipped": [dict(entry) for entry in scan.skipped],
    }


def write_data_report(
    path: str | os.PathLike, scan: ScanResult, splits: dict[str, list[tuple[str, int]]]
) -> dict[str, Any]:
    """Write the report (atomically) and return it."""
    report = data_report(scan, splits)
    write_json(path, report)
    return report
