"""``selection.json``: the fastest correct artifact measured on each device, beside the manifest.

The export machine is seldom the device, and int8 pays only on CPUs with an int8 dot product
(VNNI, AMX, Arm's SDOT), so the artifact to run is measured where it runs:
``edgecnn bench EXPORT --select`` times every artifact that passed parity at every thread
count and records the winner under the CPU's fingerprint (name and flags). Several devices
share one export folder, one entry each. The runtime uses the entry of the CPU it runs on;
on another CPU, or without an entry, it falls back to a rule (``runtime.artifacts.select``).
Pure Python, below bench (which writes it) and the runtime (which reads it).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from edge_cnn.errors import ManifestError
from edge_cnn.io import write_json

SELECTION_NAME = "selection.json"
SCHEMA = 1


@dataclasses.dataclass(frozen=True)
class Choice:
    """The artifact (path relative to the export folder) and thread count to use on one device."""

    artifact: str
    threads: int | None
    p50_ms: float
    batch: int = 1


def read_selections(folder: str | Path) -> dict[str, dict[str, Any]]:
    """fingerprint -> entry (cpu, flags, measured, choice, table); {} when the folder has no file."""
    path = Path(folder) / SELECTION_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path} is not valid JSON ({exc}): delete it or re-run `edgecnn bench EXPORT --select`") from None
    devices = data.get("devices") if isinstance(data, dict) else None
    if data.get("schema") != SCHEMA or not isinstance(devices, dict):
        raise ManifestError(f"{path} is not a schema {SCHEMA} selection file: delete it or re-run `edgecnn bench --select`")
    return devices


def lookup(folder: str | Path, fingerprint: str) -> Choice | None:
    """The choice measured on this CPU, or None."""
    entry = read_selections(folder).get(fingerprint)
    if entry is None:
        return None
    choice = entry.get("choice")
    try:
        return Choice(str(choice["artifact"]), _threads(choice.get("threads")), float(choice["p50_ms"]),
                      int(choice.get("batch", 1)))
    except (TypeError, KeyError, ValueError):
        path = Path(folder) / SELECTION_NAME
        raise ManifestError(f"{path}: the entry for {fingerprint} is malformed; re-run `edgecnn bench EXPORT --select`") from None


def record(folder: str | Path, fingerprint: str, cpu: dict[str, Any], choice: Choice, table: list[dict[str, Any]],
           measured: str) -> Path:
    """Add or replace this CPU's entry, keeping the other devices' (written atomically)."""
    try:
        devices = read_selections(folder)
    except ManifestError:
        devices = {}  # a broken file is replaced by a valid one
    devices[fingerprint] = {"cpu": cpu["model"], "flags": cpu["flags"], "measured": measured,
                            "choice": dataclasses.asdict(choice), "table": table}
    return write_json(Path(folder) / SELECTION_NAME, {"schema": SCHEMA, "devices": devices})


def _threads(value: Any) -> int | None:
    return None if value is None else int(value)
