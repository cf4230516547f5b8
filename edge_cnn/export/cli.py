"""``edgecnn export``: a thin layer over ``edge_cnn.export.export``.

Exit codes: 0 all artifacts OK/WARN, 1 at least one requested artifact FAILED, 2 bad input.
"""

from __future__ import annotations

import shlex
import sys

import click

from edge_cnn.export.config import ExportConfig
from edge_cnn.export.onnx_quant import CALIB_METHODS, DEPTHWISE, ONNX_FORMATS, QUANT_TYPES
from edge_cnn.formats import format_names
from edge_cnn.options import recipe_option
from edge_cnn.tasks import get_task

DEFAULTS = ExportConfig()  # every default is defined there once


@click.command(context_settings={"max_content_width": 100})
@click.argument("source", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default: SOURCE/export).")
@click.option("--format", default=DEFAULTS.format, show_default=True, help=f"Comma list of {', '.join(format_names())}.")
@click.option(
    "--int8", is_flag=True, help="Add full-integer TFLite (int8 I/O) and ONNX int8, calibrated on training images."
)
@click.option("--fp16", is_flag=True, help="Add an fp16-weight TFLite model.")
@click.option("--dynamic-range", is_flag=True, help="Add a dynamic-range (int8 weights, float activations) TFLite model.")
@click.option("--dynamic", "deprecated_dynamic", is_flag=True, hidden=True, expose_value=True,
              help="Deprecated spelling of --dynamic-range (elsewhere --dynamic means dynamic input shapes).")
@click.option("--float-io", is_flag=True, help="Keep float32 input/output tensors on the int8 TFLite model.")
@click.option("--calib", default=DEFAULTS.calib, show_default=True, help="Number of training images used for int8 calibration.")
@click.option(
    "--calib-method",
    type=click.Choice(list(CALIB_METHODS)),
    default=DEFAULTS.calib_method,
    show_default=True,
    help="ONNX int8 calibration.",
)
@click.option(
    "--calib-data",
    type=click.Path(),
    help="Image folder to calibrate on (instead of the training split); "
    "also the parity images of a bare .keras model.",
)
@click.option(
    "--onnx-format",
    type=click.Choice(list(ONNX_FORMATS)),
    default=DEFAULTS.onnx_format,
    show_default=True,
    help="ONNX int8 graph form.",
)
@click.option(
    "--onnx-activations",
    type=click.Choice(list(QUANT_TYPES)),
    default=DEFAULTS.onnx_activations,
    show_default=True,
    help="ONNX int8 activation type.",
)
@click.option("--onnx-per-channel/--onnx-per-tensor", default=DEFAULTS.onnx_per_channel, show_default=True, help="ONNX int8 weight scales.")
@click.option(
    "--onnx-reduce-range/--no-onnx-reduce-range",
    default=DEFAULTS.onnx_reduce_range,
    show_default=True,
    help="7-bit ONNX weights (avoids u8s8 saturation on AVX2 CPUs without VNNI).",
)
@click.option(
    "--onnx-float-ops",
    default=DEFAULTS.onnx_float_ops,
    metavar="OPS",
    help=f"Comma list of ONNX op types (or {DEPTHWISE}: Conv with group > 1) the ONNX int8 model keeps in float: "
    "a mixed-precision graph, int8 where it pays on the device (`edgecnn study deploy --mixed` measures it).",
)
@click.option("--opset", default=DEFAULTS.opset, show_default=True, help="ONNX opset.")
@click.option(
    "--keep-names",
    is_flag=True,
    help="Keep the converters' long tensor and node names (for debugging); by default ONNX and TFLite "
    "artifacts get short internal names (graph inputs, outputs and signatures keep theirs).",
)
@click.option("--qat", is_flag=True, help="Quantization-aware fine-tuning, then int8 artifacts.")
@click.option("--qat-epochs", default=DEFAULTS.qat_epochs, show_default=True)
@click.option("--prune", type=float, help="Magnitude-prune to this sparsity (0..1), fine-tune, strip.")
@click.option("--prune-epochs", default=DEFAULTS.prune_epochs, show_default=True)
@click.option(
    "--prune-channels",
    default=DEFAULTS.prune_channels,
    metavar="F|LAYER=N,...",
    help="Remove this fraction (0..1) of each prunable convolution's channels (smallest BN |gamma|), or keep N "
    "channels of each named convolution (the others keep all): a thinner, faster model, fine-tuned for "
    "--prune-epochs with the run's augmentation, keeping the epoch of lowest val-split loss.",
)
@click.option(
    "--target-latency",
    type=float,
    default=DEFAULTS.target_latency,
    metavar="MS",
    help="Latency-guided channel pruning (NetAdapt): remove channels layer by layer, where validation accuracy "
    "suffers least, until the fp32 TFLite model takes at most MS milliseconds on this CPU at 1 thread; "
    "fine-tuned for --prune-epochs.",
)
@click.option(
    "--distill",
    is_flag=True,
    help="Fine-tune the channel-pruned model with the unpruned model as teacher (knowledge distillation: its "
    "outputs at temperature 4 weigh as much as the labels).",
)
@click.option(
    "--prune-lr",
    type=float,
    default=DEFAULTS.prune_lr,
    metavar="LR",
    help="Fine-tune the channel-pruned model with Adam and a cosine decay from LR to 0 (default: a constant 1e-4; "
    "1e-3 recovered a MobileNetV2 pruned by 40%, README).",
)
@click.option("--cluster", type=int, help="Cluster each kernel's weights into this many values, fine-tune, strip.")
@click.option("--cluster-epochs", default=DEFAULTS.cluster_epochs, show_default=True)
@click.option("--preprocess", type=click.Path(), help="preprocess.json (required for a bare .keras SOURCE).")
@click.option("--labels", type=click.Path(), help="labels.json (a JSON list) for a bare .keras SOURCE.")
@click.option(
    "--embedding",
    is_flag=True,
    help="Add a second output to every artifact: the head_pool features minus their training-split mean "
    "(manifest meaning 'embedding'), "
    "for `edgecnn face enroll/identify` and Predictor.embed().",
)
@click.option("--wide", is_flag=True, help="Show every column (gzip size, agreement, max abs diff) on the terminal.")
@recipe_option
def export(source: str, wide: bool, **options) -> None:
    """Export a trained model to TFLite / ONNX / SavedModel and check every artifact against Keras.

    SOURCE is a run directory of `edgecnn train` or a bare .keras file (with --preprocess).
    Writes the artifacts, manifest.json, report.json and report.md to SOURCE/export (or --out)
    and prints the parity table. Exit code 1 if any artifact FAILED, 2 for bad input.

    \b
    Examples:
      edgecnn export runs/ped                                  # fp32 TFLite + ONNX
      edgecnn export runs/ped --int8                           # + int8 TFLite (int8 I/O) + ONNX QDQ
      edgecnn export runs/ped --int8 --wide                    # every column (gzip, agreement, max abs diff)
      edgecnn export runs/ped --int8 --qat --qat-epochs 2      # quantization-aware training first
      edgecnn export runs/ped --prune 0.5 --prune-epochs 2     # 50% magnitude pruning
      edgecnn export runs/ped --prune-channels 0.5             # half the channels: fewer MACs
      edgecnn export runs/ped --prune-channels stage1_conv=8,stage2_conv=16 --prune-epochs 60   # per layer
      edgecnn export runs/ped --target-latency 2               # NetAdapt: prune to 2 ms on this CPU
      edgecnn export runs/mnv2 --prune-channels 0.4 --prune-epochs 60 --prune-lr 1e-3 --distill   # + teacher
      edgecnn export runs/mnv2 --int8 --onnx-float-ops DepthwiseConv   # ONNX int8 with float depthwise convs
      edgecnn export runs/ped --cluster 16 --out runs/ped/export_c16
      edgecnn export runs/ped --format tflite,onnx,saved_model --fp16 --dynamic-range
      edgecnn export runs/ped --int8 --keep-names --out runs/ped/export_debug   # converters' long names
      edgecnn export model.keras --preprocess preprocess.json --calib-data images/ --int8
      edgecnn export runs/faces --embedding --int8                # + embedding output for face enrollment
    """
    from edge_cnn.export.report import COLUMNS, KEY_COLUMNS
    from edge_cnn.export.exporter import export as run_export
    from edge_cnn.report import print_table

    if options.pop("deprecated_dynamic"):
        click.secho("warning: --dynamic is deprecated and will be removed: use --dynamic-range", fg="yellow", err=True)
        options["dynamic_range"] = True
    result = run_export(source, ExportConfig(**options), verbose=1 if sys.stdout.isatty() else 2, log=lambda m: click.echo(f"export: {m}", err=True))
    print_table(result.rows, COLUMNS if wide else KEY_COLUMNS, wide=wide,
                title=f"edgecnn export -> {result.manifest_path.parent}")
    click.echo(f"manifest: {result.manifest_path}\nreport:   {result.report_md}")
    if not result.failed:
        folder = shlex.quote(str(result.manifest_path.parent))
        click.echo(f"next:     {get_task(result.manifest.task).try_command.format(export=folder)}\n"
                   f"          edgecnn bench {folder} --select   # the fastest correct artifact on this CPU")
    for line in result.summary["failed"]:
        click.secho(f"FAILED {line}", fg="red", err=True)
    if result.failed:
        click.get_current_context().exit(1)
