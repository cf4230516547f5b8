"""``edgecnn pipeline``: the main job in one command.

train (the target's recipe) -> export (fp32 + int8 TFLite and ONNX, parity on the test split)
-> bench (ONNX Runtime and LiteRT on the CPU, CUDA too when a GPU is active, Keras as the
baseline) -> one summary table of accuracy and latency per artifact, with every path written.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any, Callable

import click

from edge_cnn.errors import EdgeCNNError
from edge_cnn.recipes import list_recipes, load_recipe

SUMMARY_COLUMNS = ["artifact", "status", "size_mb", "test_accuracy_pct", "agreement_pct", "p50_ms", "images_per_s", "speedup"]


@dataclasses.dataclass
class PipelineResult:
    run_dir: Path
    export_dir: Path
    rows: list[dict[str, Any]]
    files: dict[str, Path]


def gpu_providers() -> list[str]:
    """['cuda'] when onnxruntime has the CUDA provider and nvidia-smi sees a GPU, else []."""
    import onnxruntime

    from edge_cnn.machine import gpu_info

    return ["cuda"] if "CUDAExecutionProvider" in onnxruntime.get_available_providers() and gpu_info() else []


def summary_rows(export_rows: list[dict[str, Any]], bench_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per benchmarked configuration, joined with its artifact's parity facts."""
    parity = {(row["Format"], row["Precision"]): row for row in export_rows}
    rows = []
    for bench in bench_rows:
        facts = parity.get((bench["format"], bench["precision"]), {})
        provider = "" if bench["provider"] in ("cpu", "tf") else f" [{bench['provider']}]"
        rows.append(
            {
                "artifact": f"{bench['format']} {bench['precision'] or ''}".strip() + provider,
                "status": facts.get("Status", bench["status"]) if bench["status"] == "OK" else bench["status"],
                "size_mb": bench["size_mb"],
                "test_accuracy_pct": facts.get("Test accuracy (%)"),
                "agreement_pct": facts.get("Agreement (%)"),
                "p50_ms": bench["p50_ms"],
                "images_per_s": bench["images_per_s"],
                "speedup": bench["speedup"],
            }
        )
    return rows


def run_pipeline(
    target: str = "face",
    data: str | None = None,
    out: str | Path | None = None,
    int8: bool = True,
    epochs: int | None = None,
    fine_tune_epochs: int | None = None,
    runs: int = 50,
    log: Callable[[str], None] = lambda message: None,
    verbose: int = 0,
) -> PipelineResult:
    """Train ``target``'s recipe, export fp32 (+ int8) TFLite and ONNX with parity, bench every artifact
    and the Keras baseline, and write summary.json/.md, bench.json/.md/.png into ``out``. ``verbose``
    is Keras' (0 quiet, 1 a live bar, 2 a line per epoch); ``log`` receives one line per step."""
    from edge_cnn import bench
    from edge_cnn.bench.plot import plot_report
    from edge_cnn.export import export
    from edge_cnn.io import numbered_dir, write_json, write_text
    from edge_cnn.report import to_markdown
    from edge_cnn.train import TrainConfig, train

    if target not in list_recipes():
        raise EdgeCNNError(f"unknown target {target!r}: use one of {', '.join(list_recipes())}")
    out = Path(out) if out else numbered_dir(Path("runs") / f"pipeline-{target}")  # a rerun never overwrites
    if (out / "summary.json").exists():
        raise EdgeCNNError(f"--out {out} already holds a pipeline run: choose another --out (or leave it out for runs/pipeline-{target}-N)")
    settings = load_recipe(target)
    settings["out"] = str(out / "train")
    if data is not None:
        settings["data"] = str(data)
    for key, value in (("epochs", epochs), ("fine_tune_epochs", fine_tune_epochs)):
        if value is not None:
            settings[key] = value
    log(f"[1/3] train {target}: {settings['data']} -> {settings['out']}")
    trained = train(TrainConfig.from_dict(settings), verbose=verbose)
    if trained.interrupted:
        raise KeyboardInterrupt
    log(f"[2/3] export fp32{' + int8' if int8 else ''} TFLite and ONNX -> {trained.run_dir / 'export'}")
    exported = export(trained.run_dir, int8=int8, log=log)  # into the run, where bench finds model.keras
    providers = ["cpu", *gpu_providers()]
    log(f"[3/3] bench on {', '.join(providers)}: every artifact and the Keras baseline, batch 1")
    report = bench.run([exported.manifest_path.parent], provider=providers, runs=runs, warmup=5, progress=False)
    files = {
        "run directory": trained.run_dir,
        "manifest": exported.manifest_path,
        "parity report": exported.report_md,
        "bench": out / "bench.json",
        "bench plot": out / "bench.png",
        "summary": out / "summary.md",
    }
    report.write(json_path=files["bench"], md_path=out / "bench.md")
    plot_report(report, files["bench plot"])
    rows = summary_rows(exported.rows, report.rows())
    write_json(out / "summary.json", {"target": target, "machine": report.machine, "rows": rows,
                                      "files": {k: str(v) for k, v in files.items()}})
    write_text(files["summary"], f"Target: {target}. Machine: {report.machine_line()}\n\n" + to_markdown(rows, SUMMARY_COLUMNS))
    failed = exported.failed + [r.row() for r in report.failures]
    if failed:
        raise EdgeCNNError(f"{len(failed)} artifact(s) or benchmark(s) failed: see {files['parity report']} and {files['bench']}")
    return PipelineResult(trained.run_dir, exported.manifest_path.parent, rows, files)


@click.command()
@click.option("--target", type=click.Choice(list(list_recipes())), default="face", show_default=True,
              help="A packaged recipe (edge_cnn/recipes/).")
@click.option("--data", default=None, help="Image folder (default: the recipe's; face uses the embedded set).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder [default: runs/pipeline-TARGET, numbered -2, -3... when taken].")
@click.option("--int8/--no-int8", default=True, show_default=True, help="Also export full-integer TFLite and ONNX.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override the recipe's stage-1 epochs.")
@click.option("--fine-tune-epochs", type=click.IntRange(min=0), default=None, help="Override the recipe's stage-2 epochs.")
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True, help="Timed runs per artifact.")
def pipeline(target, data, out, int8, epochs, fine_tune_epochs, runs):
    """Train -> export (fp32 + int8, parity) -> bench -> summary, for a target recipe.

    \b
    Examples:
      edgecnn pipeline                                        # face vs non-face, embedded data, a few minutes
      edgecnn pipeline --target pedestrian --data ../shared/data/pedestrian --out runs/ped
      edgecnn pipeline --target faces_id --data ../shared/data/att_faces
    """
    import sys

    from edge_cnn.report import print_table

    result = run_pipeline(target, data, out, int8, epochs, fine_tune_epochs, runs, log=click.echo,
                          verbose=1 if sys.stdout.isatty() else 2)  # a live bar on a terminal, lines in a log
    print_table(result.rows, SUMMARY_COLUMNS, title=f"edgecnn pipeline: {target}")
    for name, path in result.files.items():
        click.echo(f"{name}: {path}")
    click.echo(f"results saved to {result.files['summary'].parent}")
    click.echo("\n".join(["next:", *(f"  {command}" for command in next_commands(result))]))


def next_commands(result: PipelineResult) -> list[str]:
    """What to run next on this run's own files: one of its test images (the embedded images too
    live on disk: the split lists name them) through the task's runtime verb (the task table's
    ``try_command``), Grad-CAM for a classifier, and bench's selection."""
    from edge_cnn.run_dir import RunDir
    from edge_cnn.tasks import DEFAULT_TASK, get_task

    run = RunDir(result.run_dir)
    images = [path for split in ("test", "val", "train") for path, _ in run.read_split(split)]
    image = shlex.quote(images[0]) if images else "IMAGE.png"
    task = run.task()
    commands = [get_task(task).try_command.format(export=shlex.quote(str(result.export_dir))).replace("IMAGE", image)]
    if task == DEFAULT_TASK:
        commands.append(f"edgecnn explain {shlex.quote(str(result.run_dir))} {image}")
    return [*commands, f"edgecnn bench {shlex.quote(str(result.export_dir))} --select"]
