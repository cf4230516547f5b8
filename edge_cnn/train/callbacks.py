"""Per-epoch machinery: learning-rate schedule, checkpoints, best weights and history.

An interrupted run loses at most the epoch in progress: after every epoch the weights,
the optimizer state and the position in the plan (stage, epoch, best metric, learning
rate, the early-stopping and plateau counters) are written to ``checkpoints/epoch-NNNN/``
through a temporary folder that is renamed into place, and only then does
``checkpoints/latest.json`` (also written atomically) point at it. A resume keeps the
history rows up to that epoch only and sets the counters back, so it stops and lowers
its rate at the same epochs as a run that was never interrupted.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

from edge_cnn.errors import EdgeCNNError
from edge_cnn.io import atomic_path, write_json, write_text
import numpy as np

from edge_cnn.keras import keras
from edge_cnn.report import to_csv

HISTORY_COLUMNS = ["epoch", "stage", "lr", "loss", "accuracy", "val_loss", "val_accuracy", "time_s"]
EXTRA_COLUMNS = ["val_auc"]  # written only by routes that log them (embed: verification ROC AUC)


# --- learning rate ----------------------------------------------------------------

def epoch_learning_rate(base_lr: float, index: int, stage_epochs: int, schedule: str, warmup: int) -> float | None:
    """Learning rate of the ``index``-th epoch of a stage (None: leave it to ReduceLROnPlateau).

    Linear warm-up to ``base_lr`` over ``warmup`` epochs, then cosine decay over the rest of
    the stage, a constant rate, or the plateau rule.
    """
    if index < warmup:
        return base_lr * (index + 1) / (warmup + 1)
    if schedule == "constant" or (schedule == "plateau" and index == warmup):
        return base_lr
    if schedule == "plateau":
        return None
    decay_epochs = max(1, stage_epochs - warmup)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * (index - warmup) / decay_epochs))


class StageSchedule(keras.callbacks.Callback):
    """Sets the optimizer's rate at the start of each epoch of one stage."""

    def __init__(self, base_lr: float, stage_start: int, stage_epochs: int, schedule: str, warmup: int):
        super().__init__()
        self.base_lr, self.stage_start, self.stage_epochs = base_lr, stage_start, stage_epochs
        self.schedule, self.warmup = schedule, warmup

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        rate = epoch_learning_rate(self.base_lr, epoch - self.stage_start, self.stage_epochs, self.schedule, self.warmup)
        if rate is not None:
            self.model.optimizer.learning_rate.assign(rate)


# --- counters that survive a resume ------------------------------------------------------

def _finite_or_none(value) -> Any:
    """JSON-safe counter: the +-inf 'nothing seen yet' of a fresh rule becomes None."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class _Resumable:
    """Mixin for a Keras rule whose counters live between epochs. Keras resets them in
    ``on_train_begin``, which every ``fit`` (so every resume) calls; counters handed to
    ``load_counters`` are set again right after that reset."""

    key = ""
    counter_names: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pending: dict[str, Any] | None = None

    def counters(self) -> dict[str, Any]:
        return {name: _finite_or_none(getattr(self, name)) for name in self.counter_names}

    def load_counters(self, values: dict[str, Any] | None) -> None:
        self._pending = dict(values) if values else None

    def on_train_begin(self, logs=None) -> None:
        super().on_train_begin(logs)
        for name, value in (self._pending or {}).items():
            if name in self.counter_names and value is not None:
                setattr(self, name, value)
        self._pending = None


class ResumableEarlyStopping(_Resumable, keras.callbacks.EarlyStopping):
    """EarlyStopping whose patience count and best value survive ``--resume``."""

    key = "early_stopping"
    counter_names = ("wait", "best", "best_epoch")


class ResumableReduceLROnPlateau(_Resumable, keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau whose patience, best value and cooldown survive ``--resume``."""

    key = "plateau"
    counter_names = ("wait", "best", "cooldown_counter")


def restore_counters(rules: list, saved: dict[str, Any] | None) -> None:
    """Hand each rule its counters from a checkpoint's state (``state["counters"]``)."""
    for rule in rules:
        rule.load_counters((saved or {}).get(rule.key))


# --- checkpoints ------------------------------------------------------------------

def _save_arrays(path: Path, arrays: list) -> None:
    with atomic_path(path) as tmp:
        np.savez(tmp, *arrays)


def load_arrays(path: str | Path) -> list:
    with np.load(path) as data:
        return [data[f"arr_{index}"] for index in range(len(data.files))]


class Checkpoints:
    """``checkpoints/epoch-NNNN/`` (model.npz, optimizer.npz, state.json), ``best_weights.npz``
    and ``checkpoints/latest.json``; only the newest epoch folder is kept.

    The values are copied to numpy at the end of the epoch (milliseconds) and written by a
    background thread while the next epoch trains; ``wait()`` joins it (done before the
    next write, at the end of a stage and on Ctrl-C), so the files always describe one epoch.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.latest_path = self.directory / "latest.json"
        self.best_path = self.directory / "best_weights.npz"
        self._writer: threading.Thread | None = None
        self._failure: BaseException | None = None

    def save(self, model, optimizer, state: dict[str, Any], best_weights: list | None = None) -> None:
        state = {**state, "lr": float(keras.backend.get_value(optimizer.learning_rate))}
        snapshot = (model.get_weights(), [variable.numpy() for variable in optimizer.variables])
        self.wait()
        self._writer = threading.Thread(target=self._write, args=(snapshot, state, best_weights), daemon=False)
        self._writer.start()

    def _write(self, snapshot, state: dict[str, Any], best_weights: list | None) -> None:
        try:
            if best_weights is not None:
                _save_arrays(self.best_path, best_weights)
            name = f"epoch-{state['epoch']:04d}"
            with atomic_path(self.directory / name) as tmp:
                tmp.mkdir()
                np.savez(tmp / "model.npz", *snapshot[0])
                np.savez(tmp / "optimizer.npz", *snapshot[1])
                write_json(tmp / "state.json", state)
            write_json(self.latest_path, {**state, "checkpoint": name})
            for old in self.directory.glob("epoch-*"):
                if old.name != name and old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
        except BaseException as exc:  # noqa: BLE001  re-raised in the training thread by wait()
            self._failure = exc

    def wait(self) -> None:
        """Block until the last checkpoint is on disk; raise what writing it raised."""
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise EdgeCNNError(f"writing a checkpoint to {self.directory} failed: {failure}") from failure

    def mark(self, state: dict[str, Any]) -> None:
        """Update the state of the newest checkpoint (e.g. its stage is finished)."""
        self.wait()
        latest = self.latest()
        if latest is not None:
            write_json(self.latest_path, {**latest, **state, "checkpoint": latest["checkpoint"]})

    def latest(self) -> dict[str, Any] | None:
        if not self.latest_path.is_file():
            return None
        return json.loads(self.latest_path.read_text())

    def restore(self, model, optimizer=None) -> dict[str, Any]:
        """Load the newest checkpoint into ``model`` (and ``optimizer``, whose variables must exist)."""
        state = self.latest()
        if state is None:
            raise EdgeCNNError(f"{self.directory} holds no checkpoint: nothing to resume (train without --resume)")
        folder = self.directory / state["checkpoint"]
        model.set_weights(load_arrays(folder / "model.npz"))
        if optimizer is not None:
            values = load_arrays(folder / "optimizer.npz")
            if len(values) != len(optimizer.variables):
                raise EdgeCNNError(f"{folder} does not match this optimizer: resume with the run's own config.yaml")
            for variable, value in zip(optimizer.variables, values):
                variable.assign(value)
            optimizer.learning_rate.assign(state["lr"])
        return state


# --- history ----------------------------------------------------------------------

def read_history(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [{key: _number(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def _number(text: str) -> Any:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text if text != "" else None
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def write_history(path: str | Path, rows: list[dict[str, Any]]) -> None:
    extra = [column for column in EXTRA_COLUMNS if any(row.get(column) is not None for row in rows)]
    write_text(path, to_csv(rows, HISTORY_COLUMNS + extra))


# --- the per-epoch recorder ---------------------------------------------------------

FLAT_EPOCHS = 3  # epochs of unchanged validation accuracy before FlatValidationNote explains it


class FlatValidationNote(keras.callbacks.Callback):
    """One line when validation accuracy has not moved for the first ``FLAT_EPOCHS`` epochs of a stage
    while training accuracy has, in a model with BatchNormalization.

    Why: on small data a new user sees e.g. 0.5000 for six epochs and thinks the run is broken. The
    usual cause is BatchNormalization: validation runs on its moving statistics, which trail the batch
    statistics training uses until enough batches have passed (the zoo's momentum, ``BN_MOMENTUM``,
    shortens that, it does not remove it). Said once per stage; nothing without a validation split."""

    def __init__(self, say: Callable[[str], None], epochs: int = FLAT_EPOCHS):
        super().__init__()
        self.say, self.epochs = say, epochs
        self.validation: list[float] = []
        self.training: list[float] = []

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = logs or {}
        if len(self.validation) >= self.epochs or logs.get("val_accuracy") is None or logs.get("accuracy") is None:
            return
        self.validation.append(float(logs["val_accuracy"]))
        self.training.append(float(logs["accuracy"]))
        if len(self.validation) < self.epochs or len(set(self.validation)) > 1 or len(set(self.training)) == 1:
            return
        if any(isinstance(layer, keras.layers.BatchNormalization) for layer in self.model.submodules):
            self.say(f"note: validation accuracy has stayed at {self.validation[0]:.4f} for {self.epochs} epochs while "
                     f"training accuracy moved ({self.training[0]:.4f} -> {self.training[-1]:.4f}): BatchNormalization's "
                     "moving statistics, which validation uses, are still warming up; it usually moves within a few epochs")


class RunRecorder(keras.callbacks.Callback):
    """After each epoch: history row, best weights (val accuracy, ties broken by lower val
    loss) saved atomically, then the checkpoint with the ``rules``' counters.

    Order: after the schedule and the ``rules`` (early stopping, plateau; they only count
    and never raise), so the checkpoint holds this epoch's counters and the rate the next
    epoch starts from; before any user callback, so one that stops or interrupts the run
    never skips it.
    """

    def __init__(self, run, checkpoints: Checkpoints, history: list[dict], state: dict[str, Any], monitor_val: bool,
                 rules: list | None = None):
        super().__init__()
        self.run, self.checkpoints, self.history, self.state = run, checkpoints, history, state
        self.prefix = "val_" if monitor_val else ""
        self.rules = list(rules or [])
        self._started = 0.0
        self._epoch_lr = 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._started = time.perf_counter()
        self._epoch_lr = float(keras.backend.get_value(self.model.optimizer.learning_rate))  # after the schedule

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = dict(logs or {})
        row = {key: logs.get(key) for key in ("loss", "accuracy", "val_loss", "val_accuracy")}
        row.update({key: logs[key] for key in EXTRA_COLUMNS if logs.get(key) is not None})
        row.update(
            epoch=epoch + 1,
            stage=self.state["stage"],
            lr=self._epoch_lr,
            time_s=round(time.perf_counter() - self._started, 4),
        )
        self.history.append(row)
        best_weights = self._best_weights(epoch + 1, logs)
        self.state["epoch"] = epoch + 1
        self.state["counters"] = {rule.key: rule.counters() for rule in self.rules}
        write_history(self.run.history_path, self.history)
        self.checkpoints.save(self.model, self.model.optimizer, dict(self.state), best_weights)

    def _best_weights(self, epoch: int, logs: dict) -> list | None:
        """A copy of the weights when this epoch is the best so far, else None. A task without an
        accuracy metric (detect: its figures need decoding, done once at the end) is ranked by loss."""
        accuracy = logs.get(f"{self.prefix}accuracy")
        accuracy = None if accuracy is None else float(accuracy)
        loss = float(logs.get(f"{self.prefix}loss", float("inf")))
        best = self.state.get("best")
        if best is None:
            better = True
        elif accuracy is None or best.get("accuracy") is None:
            better = loss < best["loss"]
        else:
            better = accuracy > best["accuracy"] or (accuracy == best["accuracy"] and loss < best["loss"])
        if not better:
            return None
        metric = f"{self.prefix}{'loss' if accuracy is None else 'accuracy'}"
        self.state["best"] = {"epoch": epoch, "accuracy": accuracy, "loss": loss, "metric": metric}
        return self.model.get_weights()
