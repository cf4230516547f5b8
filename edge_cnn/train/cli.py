"""``edgecnn train`` and ``edgecnn evaluate``: thin layers over ``train()`` and ``evaluate_run()``."""

from __future__ import annotations

import shlex
import sys

import click

from edge_cnn.errors import EdgeCNNError
from edge_cnn.options import recipe_option
from edge_cnn.preprocess import parse_size
from edge_cnn.tasks import task_names
from edge_cnn.train.config import OPTIMIZERS, POOLINGS, SCHEDULES, STRATEGIES, TrainConfig

DEFAULTS = TrainConfig()


def _size(ctx, param, value):
    if value is None:
        return None
    try:
        height, width = parse_size(value)
    except EdgeCNNError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    return f"{height}x{width}"


def _augment_options(function):
    options = [
        click.option("--augment/--no-augment", default=DEFAULTS.augment, show_default=True,
                     help="Switch the photo augmentation defaults on (rotation 10, shifts/zoom 0.1, hflip, "
                          "brightness/contrast 0.1); the keys below override them."),
        click.option("--rotation", type=float, help="Rotation range, +- degrees."),
        click.option("--width-shift", type=float, help="Horizontal shift, +- fraction of the width."),
        click.option("--height-shift", type=float, help="Vertical shift, +- fraction of the height."),
        click.option("--shear", type=float, help="Shear, +- degrees."),
        click.option("--zoom", type=float, help="Zoom, +- fraction."),
        click.option("--hflip/--no-hflip", default=None, help="Random horizontal flips."),
        click.option("--brightness", type=float, help="Brightness jitter, +- fraction of 255."),
        click.option("--contrast", type=float, help="Contrast jitter, factor 1 +- this."),
        click.option("--cutout", type=float, help="Cutout square side, fraction of the shorter side."),
        click.option("--mixup", type=float, help="Mixup Beta(alpha, alpha) alpha (0 = off)."),
        click.option("--cutmix", type=float, help="CutMix Beta(alpha, alpha) alpha (0 = off)."),
        click.option("--grey", type=float, default=DEFAULTS.grey, show_default=True,
                     help="Probability of converting an image to grey (every task)."),
        click.option("--blur", type=float, default=DEFAULTS.blur, show_default=True,
                     help="Probability of a Gaussian blur, radius 0.5-1.5 (every task)."),
        click.option("--downscale", type=float, default=DEFAULTS.downscale, show_default=True,
                     help="Probability of a downscale-upscale, 2-4.5x (detection: 2-3x), for low-resolution cameras."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


EXAMPLES = """
\b
Examples:
  edgecnn train --data face --out runs/face                      # embedded faces, no download
  edgecnn train --data ../shared/data/pedestrian --model mobilenet_v2 --width 0.35 \\
                --img-size 128x64 --epochs 10 --fine-tune-epochs 5 --out runs/ped
  edgecnn train --recipe pedestrian --data DIR --out runs/ped2   # a packaged recipe; flags override it
  edgecnn train --out runs/ped --resume                          # continue after Ctrl-C
  edgecnn train --data DIR --weights runs/ped --out runs/ped-ft  # start from another run's backbone
  edgecnn train --recipe pedestrian_detect --out runs/det        # a detector on box-annotated photos
  edgecnn train --task detect --data annotations.json --negatives frames/ --img-size 256x256 --out runs/det
  edgecnn train --recipe pedestrian --hard-negatives frames/ --out runs/ped_hn  # + mined false positives
  edgecnn train --recipe faces_lfw --data ../shared/data/lfw/images \\
                --exclude-pairs ../shared/data/lfw/pairs.txt --test-folds 6-10 --out runs/lfw  # face embeddings
"""


def _embed_options(function):
    options = [
        click.option("--loss", default=DEFAULTS.loss, show_default=True,
                     help="--task embed: margin head of training, arcface, cosface or softmax (normalised)."),
        click.option("--margin-scale", type=float, default=DEFAULTS.margin_scale, show_default=True,
                     help="--task embed: the margin head's scale s (64 in the papers; 32 suits a few thousand people)."),
        click.option("--margin", type=float, default=None,
                     help="--task embed: the margin m (default: arcface 0.5 rad, cosface 0.35, softmax 0)."),
        click.option("--embedding-dim", type=int, default=DEFAULTS.embedding_dim, show_default=True,
                     help="--task embed: size of the L2-normalised embedding the model outputs."),
        click.option("--exclude-pairs", default=None,
                     help="--task embed: an LFW pairs.txt whose --test-folds people stay out of training and validation."),
        click.option("--test-folds", default=None, help="--task embed: folds of --exclude-pairs to keep out, e.g. 6-10."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.command(epilog=EXAMPLES)
@recipe_option
@click.option("--data", default=DEFAULTS.data, show_default=True,
              help="Image folder (one sub-folder per class, or train/ val/ test/) or an embedded set: face. "
                   "--task detect: a COCO .json file, a folder of Pascal VOC .xml or a YOLO folder.")
@click.option("--negatives", default=None, type=click.Path(),
              help="--task detect: a folder of person-free images (background in training, false positives per "
                   "frame in val and test).")
@click.option("--hard-negatives", default=None, type=click.Path(),
              help="Window classifier (person/background): a folder of person-free images, disjoint from any "
                   "evaluation frames. A first pass trains in OUT/first_pass, its windows scoring >= "
                   "--hard-negatives-threshold as person over these images (edgecnn detect's pyramid and stride) "
                   "join the training split as background, and the run retrains from the start.")
@click.option("--hard-negatives-max", type=int, default=DEFAULTS.hard_negatives_max, show_default=True,
              help="Mined windows at most: each image's best first, then each image's second best, ...")
@click.option("--hard-negatives-threshold", type=float, default=DEFAULTS.hard_negatives_threshold, show_default=True,
              help="Person score from which a window of a --hard-negatives image is a false positive.")
@click.option("--out", default=None, help="Run directory to write (default runs/DATA-MODEL, numbered -2, -3... when taken; "
              "an --out holding a run is refused unless --resume).")
@click.option("--task", type=click.Choice(task_names()), default=DEFAULTS.task, show_default=True,
              help="What the model learns (the task table, edge_cnn.tasks): its head, loss and metrics.")
@click.option("--model", default=DEFAULTS.model, show_default=True, help="Backbone from `edgecnn zoo`.")
@click.option("--width", type=float, default=None, help="Width multiplier of the family (alpha, width).")
@click.option("--img-size", default=None, callback=_size, help="Input HxW, e.g. 128x64 (default: the model's).")
@click.option("--color", type=click.Choice(["rgb", "grayscale"]), default=DEFAULTS.color, show_default=True)
@click.option("--epochs", type=int, default=DEFAULTS.epochs, show_default=True, help="Stage 1 epochs.")
@click.option("--fine-tune-epochs", type=int, default=DEFAULTS.fine_tune_epochs, show_default=True,
              help="Stage 2 epochs (0 skips fine-tuning).")
@click.option("--batch-size", type=int, default=DEFAULTS.batch_size, show_default=True)
@click.option("--lr", type=float, default=DEFAULTS.lr, show_default=True, help="Stage 1 learning rate.")
@click.option("--fine-tune-lr", type=float, default=DEFAULTS.fine_tune_lr, show_default=True)
@click.option("--unfreeze", default=DEFAULTS.unfreeze, show_default=True,
              help="Stage 2: number of top weighted backbone layers to train, or 'all' (BN stays frozen).")
@click.option("--weights", default=DEFAULTS.weights, show_default=True,
              help="Initial backbone weights: none, imagenet (local Keras cache only), or a run dir / .keras file.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=DEFAULTS.optimizer, show_default=True)
@click.option("--momentum", type=float, default=DEFAULTS.momentum, show_default=True, help="SGD momentum.")
@click.option("--label-smoothing", type=float, default=DEFAULTS.label_smoothing, show_default=True)
@click.option("--l2", type=float, default=DEFAULTS.l2, show_default=True, help="L2 factor on every kernel.")
@click.option("--dropout", type=float, default=DEFAULTS.dropout, show_default=True, help="Dropout before the head.")
@click.option("--pooling", type=click.Choice(POOLINGS), default=DEFAULTS.pooling, show_default=True,
              help="Head: global average or max pooling, or flatten (keeps where features are; fixed input size).")
@click.option("--class-weights/--no-class-weights", default=DEFAULTS.class_weights, show_default=True,
              help="Balanced class weights for imbalanced data.")
@click.option("--early-stopping", type=int, default=DEFAULTS.early_stopping, show_default=True,
              help="Patience in epochs on the validation loss (0 = off).")
@click.option("--schedule", type=click.Choice(SCHEDULES), default=DEFAULTS.schedule, show_default=True)
@click.option("--warmup-epochs", type=int, default=DEFAULTS.warmup_epochs, show_default=True)
@click.option("--val", type=float, default=DEFAULTS.val, show_default=True, help="Validation fraction.")
@click.option("--test", type=float, default=DEFAULTS.test, show_default=True, help="Test fraction.")
@click.option("--group-by", default=None, help="Regex on file names; files sharing its group stay in one split.")
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True)
@click.option("--strategy", type=click.Choice(STRATEGIES), default=DEFAULTS.strategy, show_default=True,
              help="tf.distribute strategy (multiworker reads TF_CONFIG).")
@_augment_options
@_embed_options
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--quiet", is_flag=True, help="One line per epoch instead of progress bars (always so when the output "
              "is not a terminal: a log gets lines, not backspaces).")
def train(resume: bool, quiet: bool, **settings) -> None:
    """Train a zoo backbone with a new head on an image folder; write a run directory.

    Two stages: the head on a frozen backbone (the whole net from scratch with --weights none),
    then fine-tuning of the top --unfreeze layers at --fine-tune-lr. Ctrl-C keeps every
    finished epoch; --resume continues.
    """
    from edge_cnn.report import print_table
    from edge_cnn.train.metrics import per_class_rows, summary_rows
    from edge_cnn.train.trainer import train as run_training

    if resume:
        if not settings["out"]:
            raise EdgeCNNError("--resume needs --out: the run directory to continue")
        config = TrainConfig(out=settings["out"])
    else:
        config = TrainConfig.from_dict(settings)
    result = run_training(config, resume=resume, verbose=2 if quiet or not sys.stdout.isatty() else 1)
    if result.interrupted:
        click.secho(f"interrupted; resume with: {result.resume_command}", fg="yellow", err=True)
        raise SystemExit(130)
    metrics = result.metrics
    print_table(summary_rows(metrics, task=result.config.task), title=f"{result.run_dir}")
    if "confusion_split" in metrics:
        print_table(per_class_rows(metrics[metrics["confusion_split"]]), title=f"{metrics['confusion_split']} split")
    written = [name for name in ("model.keras", "metrics.json", "curves.png", "confusion.png")
               if (result.run_dir / name).exists()]
    click.echo(f"run directory: {result.run_dir} ({', '.join(written)})")
    click.echo(f"next: edgecnn export {shlex.quote(str(result.run_dir))} --int8")


@click.command(epilog="""
\b
Examples:
  edgecnn evaluate runs/face --data face
  edgecnn evaluate runs/ped --data ../shared/data/pedestrian --json
""")
@recipe_option
@click.argument("run", type=click.Path())
@click.option("--data", required=True, help="Image folder whose class folders carry the run's label names.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON instead of tables.")
def evaluate(run: str, data: str, batch_size: int, as_json: bool) -> None:
    """Re-evaluate a finished run's model.keras on another image folder."""
    import json

    from edge_cnn.report import print_table
    from edge_cnn.train.evaluate import evaluate_run
    from edge_cnn.train.metrics import per_class_rows

    metrics = evaluate_run(run, data, batch_size=batch_size)
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
        return
    print_table([{"images": metrics["images"], "accuracy": metrics["accuracy"], "loss": metrics["loss"],
                  "macro F1": metrics["macro_f1"], "skipped": len(metrics["skipped"])}], title=f"{run} on {data}")
    print_table(per_class_rows(metrics), title="per class")
