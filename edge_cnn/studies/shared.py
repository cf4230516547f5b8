"""What the studies have in common, defined once so that they measure and report the same way.

The comparisons (pedestrian, faces, cv, enrollment) score a run's exported CNNs through the TF-free
runtime, time inputs one at a time with ``edge_cnn.timing``, train a recipe on a folder of symlinks
(no data copied), and end alike: a table on stdout, ``OUT/<study>.{md,json}``, and bad input as one
``error: ...`` line with exit code 2 (the grammar of ``edgecnn``'s own verbs). A second copy of any
of these in a study would let two tables of the README be measured in two ways.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Callable, Sequence

from edge_cnn.errors import EdgeCNNError

# (format, precision) of every artifact a comparison measures, in its table's order
CNN_VARIANTS = [("tflite", "fp32"), ("tflite", "int8"), ("onnx", "fp32"), ("onnx", "int8")]
HOG_METHOD = "HOG + linear SVM (OpenCV)"
# the docstring lines that become a parser's examples (with the lines a trailing backslash continues them onto)
EXAMPLE_PREFIXES = ("    edgecnn study ", "    nice edgecnn study ")


# --- arguments -------------------------------------------------------------------------------


class StudyParser(argparse.ArgumentParser):
    """argparse with the CLI's error grammar: one ``error:`` line on stderr and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def study_parser(doc: str, prog: str | None = None) -> StudyParser:
    """A parser whose help is the study's docstring, its ``edgecnn study`` lines shown as the examples."""
    text, examples, continued = [], [], False
    for line in doc.strip().splitlines():
        if continued or line.startswith(EXAMPLE_PREFIXES):
            examples.append(f"  {'    ' if continued else ''}{line.strip()}")
            continued = line.endswith("\\")
        else:
            text.append(line)
    return StudyParser(prog=prog, description="\n".join(text).strip(),
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n" + "\n".join(examples))


def comma_list(text: str) -> list[str]:
    """'tflite, onnx' -> ['tflite', 'onnx'] (an argparse type)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def add_runtime_options(parser: argparse.ArgumentParser, threads_help: str = "threads for the CNN runtime [1]") -> None:
    """--formats (a comma list) and --threads, as every comparison of exported CNNs takes them."""
    parser.add_argument("--formats", type=comma_list, default="tflite,onnx",
                        help="CNN formats to export and measure [tflite,onnx]")
    parser.add_argument("--threads", type=int, default=1, help=threads_help)


# --- errors and reports ----------------------------------------------------------------------


def one_line_errors(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a study's ``main``: bad input (``EdgeCNNError``) prints one ``error:`` line and returns 2."""

    @functools.wraps(main)
    def checked(argv: list[str] | None = None, prog: str | None = None) -> int:
        try:
            return main(argv, prog)
        except EdgeCNNError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return checked


def write_report(rows: list[dict], facts: dict, columns: Sequence[str], title: str, out: Path, stem: str) -> None:
    """Print the table and its Markdown; write ``OUT/STEM.md`` and ``OUT/STEM.json`` (the facts beside the rows)."""
    from edge_cnn.report import print_table, to_markdown, write_reports

    print_table(rows, columns, title=title)
    print(to_markdown(rows, columns))
    out.mkdir(parents=True, exist_ok=True)
    write_reports(rows, json_path=out / f"{stem}.json", md_path=out / f"{stem}.md", columns=columns, extra=facts)


# --- a run's exported CNNs ---------------------------------------------------------------------


def ensure_export(run: Path, formats: Sequence[str]) -> Path:
    """RUN/export with fp32 and int8 artifacts; exported here (int8 included) when it is missing."""
    from edge_cnn.run_dir import RunDir

    export_dir = RunDir(run).require("model", "labels", "preprocess").export_dir
    if not (export_dir / "manifest.json").is_file():
        from edge_cnn.export import export

        print(f"exporting {run} (fp32 + int8: {', '.join(formats)}) ...", flush=True)
        export(run, format=list(formats), int8=True)
    return export_dir


def load_cnns(export_dir: Path, formats: Sequence[str], threads: int) -> dict[str, object]:
    """'CNN tflite int8' -> Predictor, for each exported variant; a missing one is skipped with a note."""
    from edge_cnn.runtime.predictor import Predictor

    predictors = {}
    for backend, precision in CNN_VARIANTS:
        if backend not in formats:
            continue
        try:
            predictors[f"CNN {backend} {precision}"] = Predictor.load(export_dir, backend=backend, precision=precision,
                                                                      threads=threads)
        except EdgeCNNError as exc:
            print(f"skipped CNN {backend} {precision}: {exc}", file=sys.stderr)
    if not predictors:
        raise EdgeCNNError(f"no usable CNN artifact in {export_dir}: re-export the run")
    return predictors


# --- inputs and timing -------------------------------------------------------------------------


def first_per_class(items: list[tuple[str, int]], limit: int | None) -> list[tuple[str, int]]:
    """The first ``limit`` items of each class, split order kept (all of them without a limit)."""
    if not limit:
        return items
    taken: dict[int, int] = {}
    chosen = []
    for path, label in items:
        if taken.get(label, 0) < limit:
            taken[label] = taken.get(label, 0) + 1
            chosen.append((path, label))
    return chosen


def hog_window():
    """HOG's 64x128 RGB window as a ``PreprocessSpec``: a no-op on pedestrian windows, which are cut at that size."""
    from edge_cnn.preprocess import PreprocessSpec

    return PreprocessSpec(height=128, width=64, color="rgb")


def median_latency_ms(call: Callable, inputs: Sequence, runs: int) -> float:
    """Median ms of ``call(x)`` over the first ``runs`` inputs, one at a time (after up to 5 warm-up calls)."""
    from edge_cnn.timing import time_calls

    timed = list(inputs[:runs])
    return round(time_calls(call, timed, warmup=min(5, len(inputs)), runs=len(timed)).p50_ms, 3)


def interleaved_medians(timers: dict, rounds: int) -> dict:
    """Run every timer (a call returning ms) once per round, all in turn; the median over the rounds.
    Load from other processes on a shared CPU then hits every timer alike."""
    import numpy as np

    measured: dict = {name: [] for name in timers}
    for _ in range(rounds):
        for name, timer in timers.items():
            measured[name].append(timer())
    return {name: float(np.median(values)) for name, values in measured.items()}


# --- training a recipe on chosen files ---------------------------------------------------------


def link_files(root: Path, files: dict[str, list[str]]) -> Path:
    """``root/<class>/<file>`` -> each chosen file: a class folder to train or enroll on that copies nothing."""
    for name, targets in files.items():
        (root / name).mkdir(parents=True)
        for target in targets:
            (root / name / Path(target).name).symlink_to(Path(target).resolve())
    return root


def recipe_config(recipe: str | Path, data: str | Path, out: str | Path, epochs: int | None = None, **settings):
    """The recipe's ``TrainConfig`` on another data folder and run directory; ``settings`` and ``epochs``
    (when given) override the recipe's."""
    from edge_cnn.recipes import load_recipe
    from edge_cnn.train import TrainConfig

    values = {**load_recipe(recipe), "data": str(data), "out": str(out), **settings}
    if epochs is not None:
        values["epochs"] = epochs
    return TrainConfig.from_dict(values)
