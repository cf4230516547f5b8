"""Training throughput of ``edge_cnn.train.train`` against a bare ``model.fit`` on in-memory arrays.

Why: the trainer streams images from files through tf.data and does per-epoch bookkeeping; that must not
cost more than a tenth of what Keras alone achieves on the same work. Same model, data, batch size and
epochs, one process. images/s counts training images per second of an epoch, timed from one epoch's start
to the next one's (train steps, validation and everything the trainer does after an epoch: history, best
weights, checkpoint, TensorBoard), median over the epochs after the first (the first traces the graph and
decodes the images). "total s" adds what only the trainer does once: scanning, splitting, the final
evaluation of every split and the plots. Target ratio: >= 0.9.

    edgecnn study train                      # embedded face data, small_convnet 32x32 grey
    edgecnn study train --data DIR --model mobilenet_v2 --width 0.35 --img-size 128x64
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from edge_cnn.studies.shared import one_line_errors, study_parser


def steady_images_per_second(epoch_seconds: list[float], images: int) -> float:
    """Training images per second of the median epoch after the first (which traces and decodes)."""
    return images / statistics.median(epoch_seconds[1:])


def epoch_timer():
    """A callback timing each epoch from its start to the next epoch's start (or the end of fit),
    so work done in other callbacks' on_epoch_end is counted."""
    from edge_cnn.keras import keras

    class EpochTimer(keras.callbacks.Callback):
        seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._lap()

        def on_train_end(self, logs=None):
            self._lap()

        def _lap(self):
            now = time.perf_counter()
            if getattr(self, "started", None) is not None:
                self.seconds.append(now - self.started)
            self.started = now

    timer = EpochTimer()
    timer.seconds = []
    return timer


def bench_trainer(args, out: Path):
    """``edge_cnn.train.train`` into ``out``: (its RunResult, seconds per epoch, total seconds)."""
    from edge_cnn.train import TrainConfig, train

    config = TrainConfig(data=args.data, out=str(out), model=args.model, width=args.width, img_size=args.img_size,
                         color=args.color, epochs=args.epochs, fine_tune_epochs=0, batch_size=args.batch_size,
                         class_weights=False, dropout=0.2, seed=0)
    timer = epoch_timer()
    started = time.perf_counter()
    result = train(config, callbacks=[timer], verbose=0)
    total = time.perf_counter() - started
    return result, timer.seconds, total


def bench_bare_fit(args, run_dir: Path):
    """The same model and split as arrays in memory, then plain ``model.fit``."""
    import numpy as np

    from edge_cnn.keras import keras
    from edge_cnn.run_dir import RunDir
    from edge_cnn.train.model import build_model
    from edge_cnn.train.trainer import seeded

    run = RunDir(run_dir)
    spec, labels = run.preprocess(), run.labels()

    def arrays(split):
        items = run.read_split(split)
        return spec([path for path, _ in items]), np.eye(len(labels), dtype=np.float32)[[c for _, c in items]]

    x, y = arrays("train")
    x_val, y_val = arrays("val")
    with seeded(0):  # the trainer's op determinism, so both sides pay the same for it
        model = build_model(args.model, spec.input_shape, len(labels), width=args.width, dropout=0.2)
        model.compile(keras.optimizers.Adam(1e-3), keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])
        timer = epoch_timer()
        started = time.perf_counter()
        model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, validation_data=(x_val, y_val),
                  shuffle=True, callbacks=[timer], verbose=0)
        return timer.seconds, time.perf_counter() - started, len(x)


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = study_parser(__doc__, prog)
    parser.add_argument("--data", default="face")
    parser.add_argument("--model", default="small_convnet")
    parser.add_argument("--width", type=float, default=None)
    parser.add_argument("--img-size", default="32x32")
    parser.add_argument("--color", default="grayscale")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args(argv)
    if args.epochs < 3:
        parser.error("--epochs must be at least 3 (the first epoch is not counted)")

    from edge_cnn.report import print_table

    with tempfile.TemporaryDirectory() as tmp:
        result, trainer_epochs, trainer_total = bench_trainer(args, Path(tmp) / "run")
        images = result.metrics["images"]["train"]
        bare_epochs, bare_total, bare_images = bench_bare_fit(args, result.run_dir)
    assert bare_images == images
    trainer_rate = steady_images_per_second(trainer_epochs, images)
    bare_rate = steady_images_per_second(bare_epochs, images)
    rows = [
        {"pipeline": "edge_cnn.train.train (tf.data from files)", "images/s": trainer_rate,
         "first epoch s": trainer_epochs[0], "total s": trainer_total},
        {"pipeline": "bare model.fit (numpy in memory)", "images/s": bare_rate,
         "first epoch s": bare_epochs[0], "total s": bare_total},
    ]
    print_table(rows, title=f"{args.model} {args.img_size} {args.color}, {images} training images, "
                            f"batch {args.batch_size}, {args.epochs} epochs")
    ratio = trainer_rate / bare_rate
    print(f"throughput ratio trainer / bare fit: {ratio:.3f} (target >= 0.9)")
    return 0

