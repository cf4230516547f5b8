"""Which artifacts one export writes: one ``Job`` per (format, precision), planned from the format table."""

from __future__ import annotations

import dataclasses
from typing import Sequence

from edge_cnn.formats import format_names, get_format


@dataclasses.dataclass(frozen=True)
class Job:
    format: str
    precision: str

    def filename(self, stem: str) -> str:
        return f"{stem}_{self.precision}{get_format(self.format).suffix}"


def plan_jobs(formats: Sequence[str], int8: bool, fp16: bool, dynamic: bool, qat: bool) -> list[Job]:
    """Per format of the table, in its precision order: fp32 always, then each precision asked for that
    the format writes. A QAT model gives int8 artifacts only, except where a format has no int8 (a
    SavedModel of the fake-quant graph)."""
    asked = {"fp32": not qat, "fp16": fp16 and not qat, "dynamic": dynamic and not qat, "int8": int8 or qat}
    jobs = []
    for name in (name for name in format_names() if name in formats):
        precisions = get_format(name).precisions
        wanted = [p for p in precisions if asked.get(p, False)]
        jobs += [Job(name, p) for p in (wanted or ([] if "int8" in precisions else ["fp32"]))]
    return jobs
