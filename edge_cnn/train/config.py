"""``TrainConfig``: every setting of a training run, named like its ``edgecnn train`` flag.

The dataclass is the recipe: ``config.yaml`` in the run directory is ``to_dict()`` of the
*resolved* config (defaults filled in, overrides applied), so it can be passed back as
``--recipe`` and reproduces the run. No TensorFlow here: the CLI validates without it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from edge_cnn.errors import EdgeCNNError
from edge_cnn.tasks import DEFAULT_TASK, task_names
from edge_cnn.tasks.classify import POOLINGS

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("cosine", "plateau", "constant")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
COLORS = ("rgb", "grayscale")
LOSSES = ("arcface", "cosface", "softmax")  # the embed task's margin heads (edge_cnn.train.margin)
DEFAULT_MARGINS = {"arcface": 0.5, "cosface": 0.35, "softmax": 0.0}  # the papers' margins
# TrainConfig key -> AugmentConfig field (the flag says hflip, the data layer horizontal_flip)
AUGMENT_KEYS = {
    "rotation": "rotation",
    "width_shift": "width_shift",
    "height_shift": "height_shift",
    "shear": "shear",
    "zoom": "zoom",
    "hflip": "horizontal_flip",
    "brightness": "brightness",
    "contrast": "contrast",
    "cutout": "cutout",
    "mixup": "mixup",
    "cutmix": "cutmix",
    "grey": "grey",
    "blur": "blur",
    "downscale": "downscale",
}


@dataclasses.dataclass
class TrainConfig:
    """One training run. Augmentation keys left ``None`` take the photo default when
    ``augment`` is on and 0/off when it is off. ``negatives`` belongs to box-annotated data (the detect
    task): person-free photos. ``grey``, ``blur`` and ``downscale`` are the probabilities of the
    augmentations for grey and low-resolution cameras, for every task (0 by default, even with ``augment`` on).
    ``loss``, ``margin_scale``, ``margin``, ``embedding_dim``, ``exclude_pairs`` and ``test_folds`` belong to
    the embed task: its margin head, the embedding size, and the LFW pairs whose test folds' people are
    kept out of training and validation. ``margin`` None takes the loss's default (``DEFAULT_MARGINS``)."""

    data: str = "face"
    negatives: str | None = None
    hard_negatives: str | None = None  # classify: person-free images to mine false positives from (hard_negatives.py)
    hard_negatives_max: int = 2000
    hard_negatives_threshold: float = 0.5
    out: str | None = None
    task: str = DEFAULT_TASK
    model: str = "small_convnet"
    width: float | None = None
    img_size: str | None = None
    color: str = "rgb"
    epochs: int = 10
    fine_tune_epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    fine_tune_lr: float = 1e-5
    unfreeze: str = "all"
    weights: str = "none"
    optimizer: str = "adam"
    momentum: float = 0.9
    label_smoothing: float = 0.0
    l2: float = 0.0
    dropout: float = 0.2
    pooling: str = "avg"
    class_weights: bool = True
    early_stopping: int = 0
    schedule: str = "cosine"
    warmup_epochs: int = 0
    val: float = 0.15
    test: float = 0.15
    group_by: str | None = None
    seed: int = 0
    strategy: str = "auto"
    augment: bool = False
    rotation: float | None = None
    width_shift: float | None = None
    height_shift: float | None = None
    shear: float | None = None
    zoom: float | None = None
    hflip: bool | None = None
    brightness: float | None = None
    contrast: float | None = None
    cutout: float | None = None
    mixup: float | None = None
    cutmix: float | None = None
    grey: float = 0.0
    blur: float = 0.0
    downscale: float = 0.0
    loss: str = "cosface"  # measured ahead of arcface on LFW from scratch (README, Faces in the wild)
    margin_scale: float = 32.0
    margin: float | None = None
    embedding_dim: int = 128
    exclude_pairs: str | None = None
    test_folds: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    # --- checks -----------------------------------------------------------
    def validate(self) -> None:
        """Reject impossible settings up front, naming the flag (before any epoch runs)."""
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("strategy", self.strategy, STRATEGIES)
        _choice("color", self.color, COLORS)
        _choice("pooling", self.pooling, POOLINGS)
        _choice("task", self.task, task_names())
        if self.img_size is not None:
            from edge_cnn.preprocess import parse_size

            parse_size(self.img_size)
        for name in ("epochs", "fine_tune_epochs", "early_stopping", "warmup_epochs"):
            if int(getattr(self, name)) < 0:
                raise EdgeCNNError(f"--{_flag(name)} must be >= 0; got {getattr(self, name)}")
        if self.epochs + self.fine_tune_epochs < 1:
            raise EdgeCNNError("--epochs plus --fine-tune-epochs must be at least 1")
        if int(self.batch_size) < 1:
            raise EdgeCNNError(f"--batch-size must be >= 1; got {self.batch_size}")
        for name in ("lr", "fine_tune_lr"):
            if not float(getattr(self, name)) > 0:
                raise EdgeCNNError(f"--{_flag(name)} must be > 0; got {getattr(self, name)}")
        for name in ("label_smoothing", "dropout", "momentum"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise EdgeCNNError(f"--{_flag(name)} must be in [0, 1); got {getattr(self, name)}")
        if float(self.l2) < 0:
            raise EdgeCNNError(f"--l2 must be >= 0; got {self.l2}")
        if not (0 <= float(self.val) < 1 and 0 <= float(self.test) < 1 and self.val + self.test < 1):
            raise EdgeCNNError(f"--val {self.val} and --test {self.test} must be fractions summing to less than 1")
        self.unfreeze_layers()
        if self.group_by:
            try:
                re.compile(self.group_by)
            except re.error as exc:
                raise EdgeCNNError(f"--group-by {self.group_by!r} is not a regular expression ({exc})") from None
        for name in ("grey", "blur", "downscale"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise EdgeCNNError(f"--{name} must be a probability in [0, 1]; got {getattr(self, name)}")
        if self.negatives is not None and not Path(self.negatives).is_dir():
            raise EdgeCNNError(f"--negatives {self.negatives} is not a folder: pass a folder of person-free images")
        self._validate_hard_negatives()
        if self.width is not None and not float(self.width) > 0:
            raise EdgeCNNError(f"--width must be > 0; got {self.width}")
        self._validate_embed()

    def _validate_hard_negatives(self) -> None:
        """--hard-negatives: a window classifier (classify) and a folder holding images (the classes are
        checked once the data is read: ``hard_negatives.class_indices``)."""
        if isinstance(self.hard_negatives_max, bool) or int(self.hard_negatives_max) != self.hard_negatives_max \
                or self.hard_negatives_max < 1:
            raise EdgeCNNError(f"--hard-negatives-max must be a whole number >= 1; got {self.hard_negatives_max}")
        if not 0.0 <= float(self.hard_negatives_threshold) <= 1.0:
            raise EdgeCNNError(f"--hard-negatives-threshold must be a score in [0, 1]; got {self.hard_negatives_threshold}")
        if self.hard_negatives is None:
            return
        if self.task != DEFAULT_TASK:
            raise EdgeCNNError(f"--hard-negatives mines windows for a sliding-window classifier (--task {DEFAULT_TASK}), "
                               f"not --task {self.task}" + (": a detector takes person-free images with --negatives DIR"
                                                            if self.task == "detect" else ""))
        folder = Path(self.hard_negatives)
        if not folder.is_dir():
            raise EdgeCNNError(f"--hard-negatives {folder} is not a folder: pass a folder of person-free images")
        from edge_cnn.preprocess import IMAGE_SUFFIXES, is_image_file

        if not any(path.is_file() and is_image_file(path) for path in folder.rglob("*")):
            raise EdgeCNNError(f"--hard-negatives {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}): "
                               "pass a folder of person-free images")

    def _validate_embed(self) -> None:
        """The embed task's keys (the margin's range is checked by ``edge_cnn.train.margin.check_margin``
        before any epoch: it needs the loss resolved)."""
        _choice("loss", self.loss, LOSSES)
        if not float(self.margin_scale) > 0:
            raise EdgeCNNError(f"--margin-scale must be > 0 (ArcFace uses 64, 32 for few people); got {self.margin_scale}")
        if isinstance(self.embedding_dim, bool) or int(self.embedding_dim) != self.embedding_dim or self.embedding_dim < 1:
            raise EdgeCNNError(f"--embedding-dim must be a whole number >= 1; got {self.embedding_dim}")
        if self.exclude_pairs is not None and not Path(self.exclude_pairs).is_file():
            raise EdgeCNNError(f"--exclude-pairs {self.exclude_pairs} is not a file: pass the LFW pairs.txt (View 2) "
                               "whose test folds' people must stay out of training")
        if self.test_folds is not None:
            if self.exclude_pairs is None:
                raise EdgeCNNError("--test-folds names folds of a pairs file: pass it with --exclude-pairs pairs.txt")
            from edge_cnn.data.pairs import parse_folds

            parse_folds(self.test_folds, folds=_fold_count(self.exclude_pairs))
        elif self.exclude_pairs is not None:
            raise EdgeCNNError("--exclude-pairs needs --test-folds (e.g. 6-10): the folds whose people to keep out")

    def margin_value(self) -> float:
        """``margin``, or the loss's default when unset."""
        return DEFAULT_MARGINS[self.loss] if self.margin is None else float(self.margin)

    def unfreeze_layers(self) -> int | None:
        """``--unfreeze``: None for 'all', else the number of top weighted backbone layers."""
        text = str(self.unfreeze).strip().lower()
        if text == "all":
            return None
        if not text.isdigit():
            raise EdgeCNNError(f"--unfreeze must be a number of layers or 'all'; got {self.unfreeze!r}")
        return int(text)

    # --- derived settings -------------------------------------------------
    def size(self) -> tuple[int, int]:
        from edge_cnn.preprocess import parse_size

        if self.img_size is None:
            raise EdgeCNNError("img_size is not resolved yet")
        return parse_size(self.img_size)

    def augment_values(self) -> dict[str, Any]:
        """AugmentConfig keyword arguments: explicit keys win over the photo defaults."""
        from edge_cnn.data import AugmentConfig

        base = AugmentConfig.photo_defaults().to_dict() if self.augment else AugmentConfig().to_dict()
        for key, field in AUGMENT_KEYS.items():
            value = getattr(self, key)
            if value is not None:
                base[field] = value
        return base

    def resolved(self, default_size: tuple[int, int]) -> "TrainConfig":
        """The effective recipe: image size and every augmentation key filled in."""
        values = self.to_dict()
        if values["img_size"] is None:
            values["img_size"] = f"{default_size[0]}x{default_size[1]}"
        else:
            height, width = self.size()
            values["img_size"] = f"{height}x{width}"
        augment = self.augment_values()
        for key, field in AUGMENT_KEYS.items():
            values[key] = augment[field]
        return TrainConfig.from_dict(values)

    # --- serialisation ----------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], ignore_unknown: bool = False) -> "TrainConfig":
        """Settings by name; an unknown one is refused, or with ``ignore_unknown`` dropped (export reading
        the ``config.yaml`` of a run another version trained)."""
        data = {str(key).replace("-", "_"): value for key, value in data.items()}
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if ignore_unknown:
            data = {key: value for key, value in data.items() if key in known}
        elif unknown:
            raise EdgeCNNError(f"unknown training settings {unknown}; known: {sorted(known)}")
        return cls(**data)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | os.PathLike) -> Path:
        from edge_cnn.io import write_text

        return write_text(path, self.to_yaml())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrainConfig":
        from edge_cnn.recipes import load_recipe

        return cls.from_dict(load_recipe(path))


def _fold_count(pairs_txt: str) -> int:
    """The fold count of a pairs file's header (10 when unreadable: ``read_pairs`` reports that later)."""
    try:
        with open(pairs_txt, encoding="utf-8-sig") as handle:
            return max(1, int(handle.readline().split()[0]))
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return 10


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise EdgeCNNError(f"--{_flag(name)} {value!r} is unknown: use one of {', '.join(choices)}")
