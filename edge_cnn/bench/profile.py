"""ONNX Runtime's per-node profile (``--profile``) -> the operators that take the time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge_cnn.errors import EdgeCNNError


def top_operators(profile_file: str | Path, top: int = 10) -> list[dict[str, Any]]:
    """Total kernel time per operator type, largest first (ORT's ``*_kernel_time`` node events)."""
    try:
        events = json.loads(Path(profile_file).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EdgeCNNError(f"ONNX Runtime profile {profile_file} cannot be read ({exc})") from None
    totals: dict[str, float] = {}
    calls: dict[str, int] = {}
    for event in events if isinstance(events, list) else []:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        op = (event.get("args") or {}).get("op_name", "?")
        totals[op] = totals.get(op, 0.0) + float(event.get("dur", 0)) / 1e3
        calls[op] = calls.get(op, 0) + 1
    grand = sum(totals.values()) or 1.0
    ranked = sorted(totals, key=totals.get, reverse=True)[:top]
    return [
        {"op": op, "total_ms": totals[op], "calls": calls[op], "share": totals[op] / grand} for op in ranked
    ]
