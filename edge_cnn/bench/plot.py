"""``--plot``: per-run latency distributions per configuration and, for a batch sweep, throughput vs batch."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from edge_cnn.errors import EdgeCNNError
from edge_cnn.io import atomic_path


def short_name(result) -> str:
    threads = f" t{result.threads}" if result.threads else ""
    return f"{Path(result.target).name}\n{result.provider} b{result.batch}{threads}"


def plot_report(report, path: str | os.PathLike) -> Path:
    """Box plots of the raw per-run times (ms) of every measured configuration; a second panel
    with images/s against batch size when more than one batch size was measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in report.results if r.durations_ms]
    if not measured:
        raise EdgeCNNError("nothing to plot: every configuration failed")
    sweep = len({r.batch for r in measured}) > 1
    fig, axes = plt.subplots(1, 2 if sweep else 1, figsize=(max(6.0, 1.3 * len(measured)) + (6 if sweep else 0), 4.8))
    axes = list(axes) if sweep else [axes]
    axes[0].boxplot([r.durations_ms for r in measured], showfliers=True)
    axes[0].set_xticks(range(1, len(measured) + 1), [short_name(r) for r in measured], fontsize=7)
    low = min(min(r.durations_ms) for r in measured)
    if low > 0 and max(max(r.durations_ms) for r in measured) / low > 20:
        axes[0].set_yscale("log")  # rare slow runs would otherwise flatten every box
    axes[0].set_ylabel("latency per run (ms)")
    axes[0].set_title("latency distribution")
    if sweep:
        lines = defaultdict(list)
        for r in measured:
            lines[(Path(r.target).name, r.provider, r.threads)].append((r.batch, r.throughput))
        for (name, provider, threads), points in lines.items():
            points.sort()
            axes[1].plot([b for b, _ in points], [t for _, t in points], marker="o",
                         label=f"{name} {provider}" + (f" t{threads}" if threads else ""))
        axes[1].set_xscale("log", base=2)
        batches = sorted({r.batch for r in measured})
        axes[1].set_xticks(batches, [str(b) for b in batches])
        axes[1].set_xlabel("batch")
        axes[1].set_ylabel("images / s")
        axes[1].set_title("throughput vs batch")
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
