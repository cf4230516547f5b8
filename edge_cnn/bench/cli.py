"""``edgecnn bench``: a thin layer over ``edge_cnn.bench.run`` that prints and writes its report."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import click

from edge_cnn.bench.config import GRAPH_OPTIMIZATIONS, BenchConfig
from edge_cnn.errors import EdgeCNNError
from edge_cnn.options import recipe_option
from edge_cnn.report import print_table, terminal_width

DEFAULTS = BenchConfig()  # every default is defined there once


@click.command()
@click.argument("targets", nargs=-1, required=True)
@click.option("--provider", default=DEFAULTS.provider, show_default=True, help="ONNX Runtime providers, comma-separated: cpu,cuda,tensorrt.")
@click.option("--batch", default=str(DEFAULTS.batch), show_default=True, help="Batch sizes, comma-separated (a sweep).")
@click.option("--threads", default=DEFAULTS.threads, help="ORT intra-op / LiteRT threads, comma-separated (default: the library's).")
@click.option("--inter-op-threads", type=int, default=DEFAULTS.inter_op_threads, help="ORT inter-op threads.")
@click.option("--warmup", type=int, default=DEFAULTS.warmup, show_default=True, help="Untimed calls before timing.")
@click.option("--runs", type=int, default=DEFAULTS.runs, show_default=True, help="Timed calls (unless --duration).")
@click.option("--duration", type=float, default=DEFAULTS.duration, help="Time for this many seconds instead of --runs.")
@click.option("--data", type=click.Path(), default=None,
              help="Folder of real images, preprocessed as the manifest says; with one sub-folder per label, "
              "each model's accuracy on them is measured too.")
@click.option("--input-shape", default=None, help="Fills dynamic dimensions: one input without batch, e.g. 32x32x3.")
@click.option("--include-copies", is_flag=True, help="GPU: time the host<->device copies too.")
@click.option("--io-binding/--no-io-binding", default=DEFAULTS.io_binding, help="ORT IO binding (default: on for cuda/tensorrt).")
@click.option("--graph-opt", type=click.Choice(GRAPH_OPTIMIZATIONS), default=DEFAULTS.graph_opt, show_default=True,
              help="ORT graph optimization level.")
@click.option("--profile", is_flag=True, help="Write ORT's per-node profile, or for a .tflite each operator's time run "
              "alone (LiteRT has no profiler in Python), and print the top operator types.")
@click.option("--profile-dir", type=click.Path(file_okay=False), default=DEFAULTS.profile_dir, show_default=True,
              help="Where --profile writes its JSON files.")
@click.option("--baseline", default=None, help="Entry speedups are relative to (file name, 'keras', 'tflite-int8'...); default: the first.")
@click.option("--trt-fp16", is_flag=True, help="TensorRT: allow fp16 kernels.")
@click.option("--trt-int8", is_flag=True, help="TensorRT: allow int8 kernels.")
@click.option("--trt-cache", type=click.Path(file_okay=False), default=None, help="TensorRT engine cache folder.")
@click.option("--select", "select", is_flag=True,
              help="EXPORT only: time every artifact that passed parity at 1..cores threads and record the fastest "
              "for this CPU in selection.json, which predict/detect/face then use.")
@click.option("--keras/--no-keras", default=DEFAULTS.keras, show_default=True, help="Export folders: add the Keras baseline.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Write the report as JSON.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="Write the rows as CSV.")
@click.option("--md", "md_path", type=click.Path(dir_okay=False), default=None, help="Write the rows as Markdown.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="Write latency/throughput plots (PNG).")
@click.option("--wide", is_flag=True, help="Show every column (create, first call, mean, p90, peak RSS) on the terminal.")
@recipe_option
def bench(targets, json_path, csv_path, md_path, plot_path, select, wide, **options):
    """Latency and throughput of .onnx/.tflite files or export folders, side by side.

    \b
    Examples:
      edgecnn bench model.onnx                       # CPU, batch 1, p50/p90/p95/p99, images/s
      edgecnn bench runs/ped/export                  # every artifact of the manifest + the Keras baseline
      edgecnn bench model.onnx --provider cpu,cuda,tensorrt --batch 1,8,32 --threads 1,2
      edgecnn bench model.tflite --threads 2 --duration 10
      edgecnn bench a.onnx b.tflite --json out.json --csv out.csv --md out.md --plot out.png
      edgecnn bench runs/ped/export --select         # on the device: record its fastest correct artifact
      edgecnn bench runs/ped/export --data ../shared/data/pedestrian   # speed and accuracy per artifact

    A requested provider that is not active exits with code 2 (never a silent CPU fallback).
    Failed configurations are reported in the table, and the command then exits with code 2.
    """
    from edge_cnn.bench.runner import KEY_COLUMNS, TABLE_COLUMNS, run
    from edge_cnn.io import ensure_writable_file

    outputs = {"--json": json_path, "--csv": csv_path, "--md": md_path, "--plot": plot_path}
    for flag, path in outputs.items():
        if path:
            ensure_writable_file(path, flag)  # before measuring: a bad path costs nothing
    if select:
        from edge_cnn.bench.select import select_artifact

        if len(targets) != 1:
            raise EdgeCNNError("--select takes one export folder: run it once per export")
        selection = select_artifact(targets[0], BenchConfig(**options))
        report = selection.report
    else:
        report = run(list(targets), BenchConfig(**options))
    click.echo(textwrap.fill(report.machine_line(), terminal_width(), subsequent_indent="  "))
    measured_accuracy = any(result.accuracy_pct is not None for result in report.results)
    columns = [c for c in (TABLE_COLUMNS if wide else KEY_COLUMNS) if c != "accuracy_pct" or measured_accuracy]
    print_table(_short_model_names(report.rows()), columns, wide=wide,
                title="edgecnn bench (speedup = baseline p50 / p50)")
    shown = set()
    for result in report.results:
        if result.top_ops and result.profile_file not in shown:  # one profile per session, shared by its batches
            shown.add(result.profile_file)
            ops = [{"op": o["op"], "total_ms": o["total_ms"], "calls": o["calls"], "share_%": 100 * o["share"]}
                   for o in result.top_ops]
            print_table(ops, title=f"top operators: {Path(result.target).name} {result.provider} ({result.profile_file})")
    report.write(json_path=json_path, csv_path=csv_path, md_path=md_path)
    if plot_path:
        from edge_cnn.bench.plot import plot_report

        plot_report(report, plot_path)
    for path in (json_path, csv_path, md_path, plot_path):
        if path:
            click.echo(f"wrote {path}")
    if select:
        chosen = selection.choice
        click.echo(f"selected for {selection.fingerprint}: {chosen.artifact} with {chosen.threads} thread(s), "
                   f"p50 {chosen.p50_ms:.3g} ms at batch {chosen.batch} -> {selection.path}")
    if report.failures:
        lines = [f"{Path(r.target).name} {r.provider} batch {r.batch}: {r.error}" for r in report.failures]
        raise EdgeCNNError(f"{len(report.failures)} of {len(report.results)} configurations failed: " + "; ".join(lines))


def _short_model_names(rows: list[dict]) -> list[dict]:
    """Rows with each model path relative to the folder all of them share, for the terminal table (the
    JSON/CSV/Markdown reports keep full paths): a long temporary path would wrap inside its cell."""
    folders = [str(Path(str(row["model"])).parent) for row in rows]
    try:
        common = os.path.commonpath(folders) if folders else ""
    except ValueError:  # absolute and relative paths mixed: nothing to share
        return rows
    return [{**row, "model": os.path.relpath(str(row["model"]), common)} if common else row for row in rows]
