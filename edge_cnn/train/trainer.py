"""``train(config) -> RunResult``: data -> two-stage transfer learning -> run directory.

Stage 1 trains the head on a frozen backbone when the run starts from weights
(``--weights imagenet|PATH``) and the whole network from scratch (``--weights none``).
Stage 2 fine-tunes the top ``--unfreeze`` layers (BatchNormalization kept in inference
mode) at ``--fine-tune-lr``, with a fresh optimizer. Both stages share one epoch
numbering, one history and one checkpoint folder, so ``--resume`` can enter either.

What the data is, how it is batched and how a split is scored belong to the task's data route
(``Task.data_kind``): ``FolderRoute`` here for class folders, ``box_route.BoxRoute`` for
box-annotated photos, ``identity_route.IdentityRoute`` for one folder per person (it also trains a
wrapper of the model, validates in a callback and saves the model itself: the optional route hooks
``head_outputs``, ``fit_model``, ``callbacks`` and ``save_best_model``). The stages, checkpoints,
history and curves are the same for every route.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

from edge_cnn.errors import EdgeCNNError
from edge_cnn.io import atomic_path, ensure_writable_dir, numbered_dir, write_json
from edge_cnn.keras import keras, tf
from edge_cnn.preprocess import PreprocessSpec
from edge_cnn.run_dir import SPLITS, RunDir
from edge_cnn.train import callbacks as cb
from edge_cnn.train.config import TrainConfig
from edge_cnn.tasks import get_task
from edge_cnn.train.metrics import predict_split
from edge_cnn.train.model import add_l2, build_model, imagenet_preprocess, load_initial_weights, set_stage
from edge_cnn.train.plots import plot_confusion, plot_curves


def data_route(task: str | None):
    """The data route of the task's ``data_kind``: a fresh one per run (it keeps the run's batches)."""
    from edge_cnn.train.box_route import BoxRoute
    from edge_cnn.train.identity_route import IdentityRoute

    routes = {"folder": FolderRoute, "boxes": BoxRoute, "identities": IdentityRoute}
    kind = get_task(task).data_kind
    if kind not in routes:
        raise EdgeCNNError(f"task {get_task(task).name!r} needs data of kind {kind!r}, which the trainer cannot read "
                           f"(it reads {', '.join(routes)})")
    return routes[kind]()


@dataclasses.dataclass
class RunResult:
    run_dir: Path
    config: TrainConfig
    history: list[dict[str, Any]]
    metrics: dict[str, Any] | None = None  # None when interrupted
    interrupted: bool = False
    transferred: dict[str, Any] | None = None  # layers copied from --weights
    replicas: int = 1  # devices the tf.distribute strategy trains on
    strategy: str = "default"  # the tf.distribute strategy's public name (also in metrics.json)

    @property
    def resume_command(self) -> str:
        return f"edgecnn train --out {self.run_dir} --resume"


@dataclasses.dataclass
class _Data:
    classes: list[str]
    splits: dict[str, list[tuple[str, int]]]
    spec: PreprocessSpec
    skipped: list[dict[str, str]]


def default_out(config: TrainConfig) -> Path:
    return Path("runs") / f"{Path(str(config.data)).name or 'data'}-{config.model}"


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int = 1,
    on_data: Callable[[list[str]], Any] | None = None,
) -> RunResult:
    """Train, evaluate and write the run directory ``config.out``.

    ``resume`` continues the run in ``config.out`` from its last checkpoint with its own
    config.yaml and splits (the other settings of ``config`` are ignored). ``callbacks``
    run after the trainer's own (a KeyboardInterrupt they raise is handled like Ctrl-C).
    ``on_data`` is called with the class names once the data is read, before any epoch (it may
    refuse them by raising). With ``config.hard_negatives`` a first pass trains in ``RUN/first_pass``,
    its false positives are mined and the run retrains on them (``edge_cnn.train.hard_negatives``).
    """
    # A default folder is numbered when taken (runs/face-small_convnet-2); --resume continues the unnumbered one.
    out = config.out or (default_out(config) if resume else numbered_dir(default_out(config)))
    run = RunDir(ensure_writable_dir(out))
    checkpoints = cb.Checkpoints(run.checkpoints_dir)
    if resume:
        config, state = _resume_state(run, checkpoints)
    else:
        _refuse_existing(run)
        state = None
    strategy = make_strategy(config.strategy)  # before any data work: a bad TF_CONFIG fails at once
    prepared = resume
    if config.hard_negatives and state is None:  # first pass and mining, unless the retraining started already
        from edge_cnn.train.hard_negatives import bootstrap

        interrupted = bootstrap(run, config, resume=resume, callbacks=callbacks, verbose=verbose)
        if interrupted is not None:
            return interrupted
        prepared = True
    with seeded(config.seed):
        return _train(config, run, checkpoints, state, prepared, strategy, callbacks, verbose, on_data)


def _train(config, run, checkpoints, state, resume, strategy, callbacks, verbose, on_data=None) -> RunResult:
    """Everything after the run directory is chosen, under the seed's determinism (``resume``: the
    run's data files are written already, read them back)."""
    route = data_route(config.task)
    data = route.read_back(run) if resume else _prepare_data(config, run, route)
    if on_data is not None:
        on_data(list(data.classes))
    config = TrainConfig.load(run.config_path)
    _say(verbose, f"data: {', '.join(f'{s} {len(data.splits[s])}' for s in SPLITS)} images, "
                  f"{len(data.classes)} classes, {len(data.skipped)} skipped files")
    used = {"name": strategy_name(strategy), "replicas": strategy.num_replicas_in_sync}
    if used["replicas"] > 1 or config.strategy != "auto":
        _say(verbose, f"strategy: {used['name']} on {used['replicas']} device(s)")
    with strategy.scope():
        model = build_model(config.model, data.spec.input_shape, _head_outputs(route, config, data), task=config.task,
                            width=config.width, dropout=config.dropout, pooling=config.pooling)
        add_l2(model, config.l2)
    transferred = None
    if state is None and config.weights != "none":
        copied, total, origin = load_initial_weights(model, config.weights, model_name=config.model, width=config.width,
                                                     task=config.task)
        transferred = {"layers": copied, "backbone_layers": total, "source": origin}
        _say(verbose, f"initial weights: {copied} of {total} backbone layers from {origin}")
    history = [row for row in cb.read_history(run.history_path) if state and row["epoch"] <= state["epoch"]]
    result = RunResult(run.path, config, history, transferred=transferred, replicas=used["replicas"],
                       strategy=used["name"])
    try:
        _run_stages(config, run, data, model, strategy, checkpoints, state, history, callbacks, verbose, route)
    except KeyboardInterrupt:
        checkpoints.wait()  # the last finished epoch reaches the disk before we exit
        latest = checkpoints.latest()
        done = f"epoch {latest['epoch']} is saved" if latest else "no epoch finished, nothing saved"
        _say(True, f"interrupted: {done}; continue with `{result.resume_command}`")
        result.interrupted = True
        return result
    extra = {"strategy": used, **({"initial_weights": transferred} if transferred else {})}
    if config.hard_negatives:
        from edge_cnn.train.hard_negatives import metrics_entry

        extra["hard_negatives"] = metrics_entry(run)
    result.metrics = finish_run(run, data, config, history, verbose, route, extra=extra)
    return result


# --- setup ------------------------------------------------------------------------

def _head_outputs(route, config: TrainConfig, data) -> int:
    """The head's width: the route's (embed: the embedding size), else one output per class."""
    sized = getattr(route, "head_outputs", None)
    return sized(config, data) if sized else len(data.classes)


def _say(verbose: int | bool, message: str) -> None:
    if verbose:
        print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def seeded(seed: int):
    """Same seed, same data -> same metrics on CPU: seeds plus op determinism while training.

    Determinism is process-wide, so the previous setting is restored afterwards (through
    TensorFlow's internal switch; the public API can only turn it on) and later work in the
    same process (export, benchmarks) keeps its speed.
    """
    from tensorflow.python.framework import config as tf_config

    keras.utils.set_random_seed(int(seed))
    was_enabled = getattr(tf_config, "is_op_determinism_enabled", lambda: True)()
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not was_enabled and hasattr(tf_config, "disable_op_determinism"):
            tf_config.disable_op_determinism()


def make_strategy(name: str):
    """auto: several workers (TF_CONFIG) -> multi-worker, several GPUs -> mirrored, else default."""
    if name == "auto":
        if os.environ.get("TF_CONFIG"):
            name = "multiworker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    _check_tf_config(os.environ.get("TF_CONFIG"))
    return tf.distribute.MultiWorkerMirroredStrategy()


def strategy_name(strategy) -> str:
    """Its public tf.distribute name (MultiWorkerMirroredStrategy's class is CollectiveAllReduceStrategy)."""
    for name in ("MultiWorkerMirroredStrategy", "MirroredStrategy", "OneDeviceStrategy", "TPUStrategy"):
        if isinstance(strategy, getattr(tf.distribute, name)):
            return name
    return "default"


def _check_tf_config(text: str | None) -> None:
    """Without a cluster in TF_CONFIG every worker would silently train alone on its own copy."""
    example = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}\'')
    if not text:
        raise EdgeCNNError(f"--strategy multiworker needs the TF_CONFIG environment variable on every worker, "
                           f"e.g. {example}; on one machine use --strategy mirrored or default")
    try:
        tf_config = json.loads(text)
        kind, index = tf_config["task"]["type"], int(tf_config["task"]["index"])
        members = tf_config["cluster"].get(kind)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EdgeCNNError(f"TF_CONFIG is not a valid cluster description ({type(exc).__name__}: {exc}); "
                           f"expected e.g. {example}") from None
    if not isinstance(members, list) or not 0 <= index < len(members):
        raise EdgeCNNError(f"TF_CONFIG: task {kind} {index} is not in its cluster {tf_config['cluster']}; "
                           f"expected e.g. {example}")


def _refuse_existing(run: RunDir) -> None:
    """Never overwrite finished epochs; a run that stopped before its first epoch may start over."""
    if run.model_path.exists() or (run.checkpoints_dir / "latest.json").exists():
        raise EdgeCNNError(
            f"{run.path} already holds a training run: continue it with --resume or choose another --out"
        )


def _resume_state(run: RunDir, checkpoints: cb.Checkpoints) -> tuple[TrainConfig, dict[str, Any]]:
    if not run.config_path.is_file():
        raise EdgeCNNError(f"--resume: {run.path} has no config.yaml, so it is not a run to resume (check --out)")
    config = TrainConfig.load(run.config_path)
    state = checkpoints.latest()
    if state is None and config.hard_negatives:
        return config, None  # stopped in the first pass or while mining: hard_negatives.bootstrap continues
    if state is None:
        raise EdgeCNNError(
            f"--resume: {run.checkpoints_dir} holds no checkpoint (the run stopped before its first epoch ended); "
            "start it again without --resume in a new --out"
        )
    return config, state


def _prepare_data(config: TrainConfig, run: RunDir, route):
    """The resolved config and the run's ``PreprocessSpec``, then the route reads, splits and writes the data."""
    from edge_cnn import zoo

    default_size = zoo.model_info(config.model).default_input_shape[:2]
    config = config.resolved(default_size)
    height, width = config.size()
    normalisation = imagenet_preprocess(config.model) if config.weights == "imagenet" else None
    return route.prepare(config, run, PreprocessSpec(height, width, config.color, **(normalisation or {})))


class FolderRoute:
    """Class folders (``--data DIR`` or an embedded set): scanned, split by class (and --group-by),
    batched by ``make_dataset`` with the classification augmentation, scored by ``evaluate_items``."""

    def prepare(self, config: TrainConfig, run: RunDir, spec: PreprocessSpec) -> _Data:
        return _scan_and_split(config, run, spec)

    def read_back(self, run: RunDir) -> _Data:
        return _read_run_data(run)

    def datasets(self, config: TrainConfig, data: _Data, model):
        return _datasets(config, data)

    def class_weight(self, config: TrainConfig, data: _Data) -> dict[int, float] | None:
        return class_weights(data.splits["train"], len(data.classes)) if config.class_weights else None

    def skip_epochs(self, train_ds, epochs: int) -> None:
        _skip_shuffles(train_ds, epochs)

    def evaluate(self, model, data: _Data, config: TrainConfig) -> dict[str, Any]:
        return evaluate_items(model, data.splits, data.spec, data.classes, config.batch_size, task=config.task)

    def finish(self, run: RunDir, metrics: dict[str, Any], data: _Data, shown: str) -> dict[str, Any]:
        """confusion.png of the split the terminal shows."""
        plot_confusion(metrics[shown]["confusion_matrix"], data.classes, run.path / "confusion.png",
                       f"{shown} split ({metrics[shown]['images']} images)")
        return {"confusion_split": shown}


def _scan_and_split(config: TrainConfig, run: RunDir, spec: PreprocessSpec) -> _Data:
    """Scan and split the folder, then write the run's contract files before any epoch."""
    from edge_cnn.data import resolve_data, scan_folder, split_items, write_data_report

    scan = scan_folder(resolve_data(config.data))
    if scan.presplit is not None:
        splits = {split: list(scan.presplit.get(split, [])) for split in SPLITS}
    else:
        splits = split_items(scan.items, val=config.val, test=config.test, seed=config.seed,
                             group_by=config.group_by, classes=scan.classes)
    if not splits["train"]:
        raise EdgeCNNError(f"{scan.root}: the training split is empty")
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_labels(scan.classes)
    spec.save(run.preprocess_path)
    for split in SPLITS:
        run.write_split(split, splits[split])
    write_data_report(run.data_report_path, scan, splits)
    config.save(run.config_path)
    return _Data(list(scan.classes), splits, spec, list(scan.skipped))


def _read_run_data(run: RunDir) -> _Data:
    """The same split as the interrupted run: read back from splits/."""
    splits = {split: run.read_split(split) for split in SPLITS}
    report = json.loads(run.data_report_path.read_text()) if run.data_report_path.is_file() else {}
    return _Data(run.labels(), splits, run.preprocess(), report.get("skipped", []))


# --- training -----------------------------------------------------------------------

def _plan(config: TrainConfig) -> list[tuple[int, int, float]]:
    """[(stage, epochs, base learning rate)] of the stages that run."""
    stages = [(1, config.epochs, config.lr), (2, config.fine_tune_epochs, config.fine_tune_lr)]
    return [stage for stage in stages if stage[1] > 0]


def make_optimizer(config: TrainConfig, learning_rate: float):
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=config.momentum)
    return keras.optimizers.Adam(learning_rate)


def class_weights(items: list[tuple[str, int]], num_classes: int) -> dict[int, float]:
    """'balanced' weights n / (k * n_c), as scikit-learn computes them."""
    counts = Counter(label for _, label in items)
    return {c: len(items) / (num_classes * counts[c]) if counts[c] else 1.0 for c in range(num_classes)}


def _datasets(config: TrainConfig, data: _Data):
    from edge_cnn.data import AugmentConfig, make_dataset

    augment = AugmentConfig.from_dict(config.augment_values())
    count = len(data.classes)
    train_ds = make_dataset(data.splits["train"], data.spec, count, config.batch_size, training=True,
                            augment=augment, seed=config.seed)
    val_ds = (make_dataset(data.splits["val"], data.spec, count, config.batch_size)
              if data.splits["val"] else None)
    if config.strategy == "multiworker":
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        train_ds = train_ds.with_options(options)
        val_ds = val_ds.with_options(options) if val_ds is not None else None
    return train_ds, val_ds


def _run_stages(config, run, data, model, strategy, checkpoints, state, history, extra_callbacks, verbose,
                route) -> None:
    train_ds, val_ds = route.datasets(config, data, model)
    # the model fit trains (a route may wrap ``model``, e.g. in a margin head) and the route's validation
    with strategy.scope():  # a wrapper's own variables (the margin head's centres) belong to the strategy too
        fitted = route.fit_model(model, config, data) if hasattr(route, "fit_model") else model
    validation = list(route.callbacks(config, data, model)) if hasattr(route, "callbacks") else []
    validating = val_ds is not None or bool(validation)
    pretrained = config.weights != "none"
    weights = route.class_weight(config, data)
    done = state["epoch"] if state else 0
    best = state.get("best") if state else None
    route.skip_epochs(train_ds, done)
    for stage, stage_epochs, learning_rate in _plan(config):
        if state and (state["stage"] > stage or (state["stage"] == stage and state.get("stage_done"))):
            continue  # finished before the interruption
        entering = state is not None and state["stage"] == stage
        start = state["stage_start"] if entering else done
        stage_state = {"stage": stage, "stage_start": start, "epoch": done, "stage_done": False, "best": best,
                       "counters": {}}
        with strategy.scope():
            set_stage(model, stage, pretrained=pretrained, unfreeze=config.unfreeze_layers(), task=config.task)
            optimizer = make_optimizer(config, learning_rate)
            task = get_task(config.task)
            fitted.compile(optimizer, task.loss(config.label_smoothing), metrics=task.metrics())
            if state is not None:  # optimizer slots must exist before its state is read back
                optimizer.build(fitted.trainable_variables)
                checkpoints.restore(fitted, optimizer if entering else None)
        rules = _stopping_rules(config, validating)
        if entering:
            cb.restore_counters(rules, state.get("counters"))
            stage_state["counters"] = state.get("counters") or {}
        state = None
        _say(verbose, f"stage {stage} ({'fine-tuning' if stage == 2 else 'head' if pretrained else 'full'}): "
                      f"epochs {done + 1}..{start + stage_epochs}, lr {learning_rate:g}, "
                      f"{_trainable_count(fitted):,} trainable parameters")
        recorder = cb.RunRecorder(run, checkpoints, history, stage_state, monitor_val=validating,
                                  rules=rules)
        schedule = cb.StageSchedule(learning_rate, start, stage_epochs, config.schedule,
                                    config.warmup_epochs if start == 0 else 0)
        note = cb.FlatValidationNote(lambda message: _say(verbose, message))
        stage_callbacks = [schedule, *validation, *rules, recorder, note, *_log_callbacks(run), *extra_callbacks]
        if done < start + stage_epochs:
            fitted.fit(train_ds, validation_data=val_ds, epochs=start + stage_epochs, initial_epoch=done,
                      callbacks=stage_callbacks, class_weight=weights, verbose=verbose)
        done, best = stage_state["epoch"], stage_state["best"]
        stage_state["stage_done"] = True  # early stopping may end a stage before its last epoch
        checkpoints.mark(stage_state)


def _skip_shuffles(train_ds, epochs: int) -> None:
    """A resumed run continues the seeded reshuffling where the interrupted one stopped:
    every ``iter()`` draws the next epoch's order without reading an image."""
    for _ in range(epochs):
        iter(train_ds)


def _trainable_count(model) -> int:
    return int(sum(int(tf.size(v)) for v in model.trainable_variables))


def _stopping_rules(config, has_val) -> list:
    """Plateau schedule and early stopping: the callbacks whose counters a checkpoint keeps."""
    monitor = "val_loss" if has_val else "loss"
    rules = []
    if config.schedule == "plateau":
        rules.append(cb.ResumableReduceLROnPlateau(monitor=monitor, factor=0.5, patience=2, verbose=0))
    if config.early_stopping:
        rules.append(cb.ResumableEarlyStopping(monitor=monitor, patience=config.early_stopping))
    return rules


def _log_callbacks(run) -> list:
    if importlib.util.find_spec("tensorboard") is None:  # tf.summary needs the tensorboard package
        return []
    return [keras.callbacks.TensorBoard(log_dir=str(run.path / "tensorboard"), write_graph=False, profile_batch=0)]


# --- evaluation -----------------------------------------------------------------------

def evaluate_items(model, splits: dict[str, list[tuple[str, int]]], spec: PreprocessSpec, classes: list[str],
                   batch_size: int = 64, task: str | None = None) -> dict[str, Any]:
    """{split: the task's metrics} of ``model`` on each split (an empty split gives the empty metrics)."""
    from edge_cnn.data import make_dataset

    evaluate = get_task(task).evaluate
    results = {}
    for split, items in splits.items():
        dataset = make_dataset(items, spec, len(classes), batch_size, cache=False) if items else []
        results[split] = evaluate(*predict_split(model, dataset), classes)
    return results


def save_best_model(run: RunDir, data: _Data, config: TrainConfig):
    """model.keras = a fresh classifier holding the best epoch's weights (uncompiled, all trainable)."""
    model = build_model(config.model, data.spec.input_shape, len(data.classes), task=config.task,
                        width=config.width, dropout=config.dropout, pooling=config.pooling)
    model.set_weights(cb.load_arrays(cb.Checkpoints(run.checkpoints_dir).best_path))
    with atomic_path(run.model_path) as tmp:
        model.save(tmp)
    return model


def finish_run(run: RunDir, data, config: TrainConfig, history: list[dict], verbose: int, route,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate the best model on every split; write metrics.json (with ``extra``: the strategy,
    the initial weights), curves.png and the route's plots (class folders: confusion.png)."""
    saver = getattr(route, "save_best_model", None)
    model = saver(run, data, config) if saver else save_best_model(run, data, config)
    metrics: dict[str, Any] = {"task": config.task, "labels": data.classes}
    metrics.update(route.evaluate(model, data, config))
    shown = next((s for s in ("test", "val", "train") if metrics[s]["images"]), "train")
    latest = cb.Checkpoints(run.checkpoints_dir).latest() or {}
    metrics.update(
        images={split: len(data.splits[split]) for split in SPLITS},
        skipped=data.skipped,
        best_epoch=(latest.get("best") or {}).get("epoch"),
        epochs=len(history),
        **route.finish(run, metrics, data, shown),
        **(extra or {}),
    )
    write_json(run.metrics_path, metrics)
    if history:
        plot_curves(history, run.path / "curves.png")
    return metrics
