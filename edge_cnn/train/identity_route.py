"""The trainer's route for identity folders (tasks whose ``data_kind`` is ``identities``: embed).

``--data`` holds one sub-folder per person (LFW's layout). The model trained is the embedding model
wrapped in a margin head (``edge_cnn.train.margin.margin_training_model``: ``--loss arcface|cosface|softmax``,
``--margin-scale``, ``--margin``) whose classes are the training people; only the embedding model is
saved (``model.keras`` holds no custom layer), so the class centres are discarded.

Why people and not images decide every split: a verification score is honest only on people the model
never trained on, so

- ``--exclude-pairs pairs.txt --test-folds 6-10`` removes every person named in those folds' pairs from
  training *and* validation (``edge_cnn.data.pairs``), before anything is split;
- validation and test take whole people (among those with at least 2 images, so that same-person pairs
  exist; ``--val`` and ``--test`` are fractions of those people, drawn with ``--seed``); people with a
  single image still train as classes;
- validation is verification, not classification: after every epoch the validation images are embedded,
  same/different pairs among them (``edge_cnn.tasks.embed.identity_pairs``, fixed) are scored by cosine,
  and the history records ``val_accuracy`` (accuracy at the best threshold on those pairs), ``val_auc``
  (ROC AUC) and ``val_loss`` = 1 - AUC (what the plateau rule and early stopping read: lower is better;
  the best epoch, as for every task with an accuracy, is the highest ``val_accuracy``, ties broken by
  ``val_loss``). ``loss``/``accuracy`` are the margin head's on the training people.

``labels.json`` lists the training people first (indices 0..T-1, the margin head's classes), then the
validation and the test people, so every row of ``splits/*.csv`` names its person; ``data_report.json``
records T (``train_people``) and the excluded people.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from edge_cnn.errors import EdgeCNNError
from edge_cnn.io import atomic_path, write_json
from edge_cnn.keras import keras, tf
from edge_cnn.preprocess import PreprocessSpec
from edge_cnn.run_dir import SPLITS, RunDir
from edge_cnn.tasks import get_task
from edge_cnn.tasks.embed import verification_metrics
from edge_cnn.train.config import TrainConfig

EMBED_BATCH = 128  # images per forward pass when embedding a split


@dataclasses.dataclass
class IdentityData:
    """What the trainer needs of the data: every person (training people first), the splits of
    (path, person index), the spec, the skipped files, and how many people train (the margin's classes)."""

    classes: list[str]
    splits: dict[str, list[tuple[str, int]]]
    spec: PreprocessSpec
    skipped: list[dict[str, str]]
    train_people: int


class IdentityRoute:
    """Prepare, read back, batch, validate and evaluate identity folders for one training run."""

    def __init__(self) -> None:
        self.training_model = None  # the margin wrapper around the run's embedding model

    # --- the run's data ----------------------------------------------------------
    def prepare(self, config: TrainConfig, run: RunDir, spec: PreprocessSpec) -> IdentityData:
        """Scan, exclude the test folds' people, split by person; write the run's contract files."""
        from edge_cnn.data import resolve_data, scan_folder

        scan = scan_folder(resolve_data(config.data))
        if scan.presplit is not None:
            raise EdgeCNNError(f"--data {scan.root} has train/val/test folders: --task embed reads one sub-folder per "
                               "person and splits by person itself (pass the folder of people)")
        classes, items = list(scan.classes), list(scan.items)
        excluded: list[str] = []
        if config.exclude_pairs:
            classes, items, excluded = _exclude_test_people(config, scan.root, classes, items)
        splits_people = split_people(items, len(classes), config.val, config.test, config.seed)
        order = [person for split in SPLITS for person in splits_people[split]]
        new_index = {old: new for new, old in enumerate(order)}
        labels = [classes[old] for old in order]
        split_of = {person: split for split in SPLITS for person in splits_people[split]}
        splits = {split: [] for split in SPLITS}
        for path, label in items:
            splits[split_of[label]].append((path, new_index[label]))
        train_people = len(splits_people["train"])
        if train_people < 2:
            raise EdgeCNNError(f"--data {scan.root}: {train_people} training people after the split; a margin head "
                               "needs at least 2 (lower --val/--test or add people)")
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_labels(labels)
        spec.save(run.preprocess_path)
        for split in SPLITS:
            run.write_split(split, splits[split])
        write_json(run.data_report_path, {
            "data": str(scan.root), "split_by": "person",
            "people": {split: len(splits_people[split]) for split in SPLITS},
            "images": {split: len(splits[split]) for split in SPLITS},
            "train_people": train_people,
            "exclude_pairs": config.exclude_pairs, "test_folds": config.test_folds,
            "excluded_people": len(excluded), "excluded_names": sorted(excluded),
            "skipped": scan.skipped,
        })
        config.save(run.config_path)
        return IdentityData(labels, splits, spec, list(scan.skipped), train_people)

    def read_back(self, run: RunDir) -> IdentityData:
        """The same people and splits as the interrupted run."""
        splits = {split: run.read_split(split) for split in SPLITS}
        report = json.loads(run.data_report_path.read_text()) if run.data_report_path.is_file() else {}
        train_people = int(report.get("train_people") or 1 + max(label for _, label in splits["train"]))
        return IdentityData(run.labels(), splits, run.preprocess(), report.get("skipped", []), train_people)

    def head_outputs(self, config: TrainConfig, data: IdentityData) -> int:
        """The head's size: the embedding's, not the number of people."""
        return int(config.embedding_dim)

    # --- training ----------------------------------------------------------------
    def fit_model(self, model, config: TrainConfig, data: IdentityData):
        """The model ``fit`` trains: (image, person) -> margin logits around the embedding ``model``."""
        if self.training_model is None:
            self.training_model = _wrap(model, config, data)
        return self.training_model

    def datasets(self, config: TrainConfig, data: IdentityData, model) -> tuple[Any, None]:
        """Training batches ((image, person), person), face-augmented; no Keras validation set: validation
        is verification (``callbacks``)."""
        return identity_dataset(data.splits["train"], data.spec, config), None

    def callbacks(self, config: TrainConfig, data: IdentityData, model) -> list:
        """The per-epoch verification on the validation people (none without them)."""
        if not data.splits["val"]:
            return []
        return [VerificationCallback(model, data.splits["val"], data.spec, config.batch_size)]

    def class_weight(self, config: TrainConfig, data: IdentityData) -> None:
        return None

    def skip_epochs(self, train_ds, epochs: int) -> None:
        for _ in range(epochs):
            iter(train_ds)

    def save_best_model(self, run: RunDir, data: IdentityData, config: TrainConfig):
        """model.keras = a fresh embedding model with the best epoch's weights (read through a fresh wrapper,
        whose weight order the checkpoints follow); the margin head is dropped."""
        from edge_cnn.train import callbacks as cb
        from edge_cnn.train.model import build_model

        model = build_model(config.model, data.spec.input_shape, int(config.embedding_dim), task=config.task,
                            width=config.width, dropout=config.dropout, pooling=config.pooling)
        _wrap(model, config, data).set_weights(cb.load_arrays(cb.Checkpoints(run.checkpoints_dir).best_path))
        with atomic_path(run.model_path) as tmp:
            model.save(tmp)
        return model

    # --- evaluation ----------------------------------------------------------------
    def evaluate(self, model, data: IdentityData, config: TrainConfig) -> dict[str, Any]:
        """{split: verification metrics} among each split's own images."""
        task = get_task(config.task)
        results = {}
        for split, items in data.splits.items():
            vectors = embed_items(model, items, data.spec)
            results[split] = task.evaluate(np.array([label for _, label in items], np.int64), vectors, data.classes)
        return results

    def finish(self, run: RunDir, metrics: dict[str, Any], data: IdentityData, shown: str) -> dict[str, Any]:
        return {"summary_split": shown, "train_people": data.train_people,
                "validation": "verification on held-out people (accuracy at the best threshold, ROC AUC)"}


def _wrap(model, config: TrainConfig, data: IdentityData):
    from edge_cnn.train.margin import check_margin, margin_training_model

    check_margin(config.loss, float(config.margin_scale), config.margin_value())
    return margin_training_model(model, data.train_people, config.loss, float(config.margin_scale),
                                 config.margin_value())


def _exclude_test_people(config: TrainConfig, root, classes, items):
    """Drop every person named in the test folds' pairs (either side, matched or not)."""
    from edge_cnn.data.pairs import exclude_people, fold_people, parse_folds, read_pairs

    pairs = read_pairs(config.exclude_pairs, root)
    people = fold_people(pairs, parse_folds(config.test_folds, pairs.folds))
    kept_classes, kept_items = exclude_people(items, classes, people)
    return kept_classes, kept_items, sorted(people & set(classes))


def split_people(items: list[tuple[str, int]], people: int, val: float, test: float,
                 seed: int) -> dict[str, list[int]]:
    """{split: person indices}: validation and test draw whole people among those with >= 2 images
    (``val``/``test`` fractions of them, at least two each when the fraction is above 0 and people
    remain: verification needs different-person pairs); the rest, single-image people included, train."""
    counts = np.bincount([label for _, label in items], minlength=people)
    present = [person for person in range(people) if counts[person] > 0]
    eligible = [person for person in present if counts[person] >= 2]
    order = list(np.random.default_rng(seed).permutation(eligible))
    n_val = max(2, int(round(val * len(eligible)))) if val > 0 and len(eligible) >= 2 else 0
    n_test = max(2, int(round(test * len(eligible)))) if test > 0 and len(eligible) - n_val >= 2 else 0
    held = {"val": sorted(int(p) for p in order[:n_val]), "test": sorted(int(p) for p in order[n_val:n_val + n_test])}
    taken = set(held["val"]) | set(held["test"])
    return {"train": [p for p in present if p not in taken], **held}


def identity_dataset(items: list[tuple[str, int]], spec: PreprocessSpec, config: TrainConfig):
    """((normalised image batch, person indices), person indices), reshuffled every epoch with the seed,
    augmented with the run's keys (``augment.pixel_augmenter``, random grey, blur and downscale included)."""
    from edge_cnn.data import AugmentConfig
    from edge_cnn.data.augment import pixel_augmenter
    from edge_cnn.data.pipeline import image_loader

    if not items:
        raise EdgeCNNError("the training split holds no image")
    paths = [str(path) for path, _ in items]
    labels = [int(label) for _, label in items]
    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    dataset = dataset.map(image_loader(spec, None), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).cache()
    dataset = dataset.shuffle(len(paths), seed=config.seed, reshuffle_each_iteration=True).batch(config.batch_size)
    augment = AugmentConfig.from_dict({**config.augment_values(), "mixup": 0.0, "cutmix": 0.0})
    if augment.changes_pixels:
        augmenter = pixel_augmenter(augment, config.seed)
        dataset = dataset.map(lambda x, y: (augmenter(x), y))
    dataset = dataset.map(lambda x, y: ((spec.normalize(tf.cast(x, tf.float32)), y), y),
                          num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def embed_items(model, items: list[tuple[str, int]], spec: PreprocessSpec, batch_size: int = EMBED_BATCH) -> np.ndarray:
    """(N, D) embeddings of the items' images through the run's spec (in the items' order)."""
    dimensions = int(model.output_shape[-1])
    chunks = [np.asarray(model(spec([path for path, _ in items[start:start + batch_size]]), training=False))
              for start in range(0, len(items), batch_size)]
    return np.concatenate(chunks) if chunks else np.zeros((0, dimensions), np.float32)


class VerificationCallback(keras.callbacks.Callback):
    """After each epoch: verification of the validation people into the logs (``val_accuracy``,
    ``val_auc``, ``val_loss`` = 1 - AUC), before the rules and the recorder read them. The validation
    images are loaded once."""

    def __init__(self, embedding_model, items: list[tuple[str, int]], spec: PreprocessSpec, batch_size: int):
        super().__init__()
        self.embedding_model = embedding_model
        self.identities = np.array([label for _, label in items], np.int64)
        self.images = spec([path for path, _ in items])
        self.batch_size = max(1, int(batch_size))

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        vectors = self.embedding_model.predict(self.images, batch_size=self.batch_size, verbose=0)
        result = verification_metrics(vectors, self.identities)
        if logs is not None and result["accuracy"] is not None:
            logs["val_accuracy"] = result["accuracy"]
            logs["val_auc"] = result["auc"]
            logs["val_loss"] = 1.0 - result["auc"]
