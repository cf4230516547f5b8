"""The ``edgecnn`` command: one click group whose verbs live beside the stage they drive.

Verbs are imported on use, so ``edgecnn --help`` and the runtime verbs start without
TensorFlow. Every verb follows one grammar: ``edgecnn VERB [SOURCE...] [--flags]``,
with ``--recipe NAME|FILE.yaml`` whose keys are the flag names (a flag given on the
command line wins; ``edge_cnn.options``). Only the ``edgecnn`` entry point imports this module. ``EdgeCNNError`` (bad input) and a verb's usage errors print one line
and exit 2.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from edge_cnn import __version__
from edge_cnn.errors import EdgeCNNError
from edge_cnn.quiet import VERBOSE_ENV, command_output

# verb -> ("module:attribute", one-line help); the one list of verbs. The help line is
# kept here so that `edgecnn --help` imports no stage (and so no TensorFlow).
VERBS = {
    "zoo": ("edge_cnn.zoo.cli:zoo", "List architectures with params and MACs; per-layer tables."),
    "train": ("edge_cnn.train.cli:train", "Train a zoo model on an image folder into a run directory."),
    "evaluate": ("edge_cnn.face.cli:evaluate", "Re-evaluate a run on another folder; LFW face verification (--protocol lfw); a detector on box annotations."),
    "export": ("edge_cnn.export.cli:export", "TFLite/ONNX artifacts (fp32, int8, QAT, pruned, clustered) + parity."),
    "bench": ("edge_cnn.bench.cli:bench", "Latency and throughput on ONNX Runtime, LiteRT and Keras."),
    "predict": ("edge_cnn.runtime.cli:predict", "Classify images with an exported model (no TensorFlow)."),
    "pipeline": ("edge_cnn.pipeline:pipeline", "Train, export, benchmark and summarise in one command."),
    "detect": ("edge_cnn.detect.cli:detect", "Find pedestrians in full images: window pyramid, batching, NMS."),
    "face": ("edge_cnn.face.cli:face", "Enroll people into a gallery and identify faces by embedding."),
    "explain": ("edge_cnn.explain.cli:explain", "CAM / Grad-CAM heatmaps, activations and filter patterns."),
    "study": ("edge_cnn.studies.cli:study", "Run a measurement study (pedestrian, faces, cv, enrollment, accuracy, export, ...)."),
}


class LazyGroup(click.Group):
    """Loads a verb's module only when the verb runs (or its help is shown)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(VERBS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = VERBS.get(name)
        if target is None:
            return None
        module_name, attribute = target[0].split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(verb, VERBS[verb][1]) for verb in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        expected = (EdgeCNNError, click.exceptions.ClickException, click.exceptions.Exit, KeyboardInterrupt, SystemExit)
        if ctx.params.get("verbose"):
            os.environ[VERBOSE_ENV] = "1"  # read by edge_cnn.quiet, also in the verbs' own modules
        try:
            with command_output(expected):
                return super().invoke(ctx)
        except EdgeCNNError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            ctx.exit(2)
        except click.UsageError as exc:  # a bad flag or value of a verb: one line too, not click's usage block
            where = exc.ctx.command_path if exc.ctx else ctx.command_path
            message = " ".join(exc.format_message().split())
            click.secho(f"error: {where}: {message} (see `{where} --help`)", fg="red", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.secho("interrupted", fg="yellow", err=True)
            ctx.exit(130)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgecnn")
@click.option("--verbose", is_flag=True, help="Also show TensorFlow's, CUDA's and the converters' own log lines.")
def main(verbose: bool) -> None:
    """edgecnn: Keras CNN -> trained -> int8 TFLite/ONNX -> benchmarked -> on the device.

    \b
    Examples:
      edgecnn zoo                                  # every architecture, params and MACs
      edgecnn train --data face --out runs/face    # embedded data, no download
      edgecnn export runs/face --int8              # TFLite + ONNX, parity report
      edgecnn bench runs/face/export               # latency, side by side
      edgecnn predict runs/face/export img.png     # embedded runtime, no TensorFlow
    """


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
