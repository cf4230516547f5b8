"""Stratified train/val/test splits, optionally keeping groups of files on one side.

Without groups each class is shuffled (seeded) and cut at its own fractions, so every
split has the class proportions of the whole. With ``group_by`` (a regex on the file
name: source prefixes, identities, photo ids) whole groups are placed greedily, largest
first, where they bring the per-class counts closest to their targets: a test set never
shares a source photo or a person with the training set.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from edge_cnn.errors import EdgeCNNError

SPLITS = ("train", "val", "test")


def split_items(
    items: Sequence[tuple[str, int]],
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
    group_by: str | None = None,
    classes: Sequence[str] | None = None,
) -> dict[str, list[tuple[str, int]]]:
    """{"train", "val", "test"} -> (path, class index) lists, each in the order of ``items``.

    ``classes`` only names the classes in error messages.
    """
    fractions = {"train": 1.0 - val - test, "val": float(val), "test": float(test)}
    _check_fractions(fractions)
    items = [(str(path), int(label)) for path, label in items]
    if not items:
        raise EdgeCNNError("no images to split: the data folder holds no readable image")
    if group_by is None:
        assignment = _stratified(items, fractions, seed)
    else:
        assignment = _grouped(items, fractions, seed, _compile(group_by))
    splits = {split: [item for item, where in zip(items, assignment) if where == split] for split in SPLITS}
    _check_not_empty(splits, fractions, items, classes, group_by)
    return splits


def group_key(pattern: re.Pattern, path: str) -> str:
    """The group of a file: the regex's first capture group (or whole match) on its name.

    A file the regex does not match is a group of its own.
    """
    match = pattern.search(Path(path).name)
    if match is None:
        return "\0" + path
    if pattern.groups and match.group(1) is not None:
        return match.group(1)
    return match.group(0)


def _compile(group_by: str) -> re.Pattern:
    try:
        return re.compile(group_by)
    except re.error as exc:
        raise EdgeCNNError(f"--group-by {group_by!r} is not a valid regular expression ({exc})") from None


def _check_fractions(fractions: dict[str, float]) -> None:
    for split in ("val", "test"):
        if not 0.0 <= fractions[split] < 1.0:
            raise EdgeCNNError(f"{split} fraction {fractions[split]} must be in [0, 1)")
    if fractions["train"] <= 0.0:
        raise EdgeCNNError(
            f"val {fractions['val']} + test {fractions['test']} leave no training images: keep their sum below 1"
        )


def _round(value: float) -> int:
    return int(math.floor(value + 0.5))


def class_targets(count: int, fractions: dict[str, float]) -> dict[str, int]:
    """Images of one class per split: rounded fractions, at least one in a split whose
    fraction is > 0 while the class can spare it, at least one left for training."""
    target = {split: _round(count * fractions[split]) for split in ("val", "test")}
    for split in ("test", "val"):
        if fractions[split] > 0 and target[split] == 0 and count - sum(target.values()) > 1:
            target[split] = 1
    while count - sum(target.values()) < 1 and any(target.values()):
        largest = max(target, key=target.get)
        target[largest] -= 1
    target["train"] = count - target["val"] - target["test"]
    return target


def _stratified(items: list[tuple[str, int]], fractions: dict[str, float], seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    assignment = ["train"] * len(items)
    by_class: dict[int, list[int]] = defaultdict(list)
    for index, (_, label) in enumerate(items):
        by_class[label].append(index)
    for label in sorted(by_class):
        indices = [by_class[label][i] for i in rng.permutation(len(by_class[label]))]
        target = class_targets(len(indices), fractions)
        cut = target["test"]
        for index in indices[:cut]:
            assignment[index] = "test"
        for index in indices[cut : cut + target["val"]]:
            assignment[index] = "val"
    return assignment


def _grouped(items: list[tuple[str, int]], fractions: dict[str, float], seed: int, pattern: re.Pattern) -> list[str]:
    labels = sorted({label for _, label in items})
    totals = [sum(1 for _, label in items if label == wanted) for wanted in labels]
    per_class = [class_targets(n, fractions) for n in totals]
    open_splits = [s for s in SPLITS if fractions[s] > 0]
    target = np.array([[per_class[c][s] for c in range(len(labels))] for s in open_splits], dtype=float)
    return [open_splits[row] for row in _place_groups(items, target, seed, pattern)]


def grouped_folds(items: Sequence[tuple[str, int]], folds: int, seed: int = 0, group_by: str | None = None) -> list[int]:
    """Cross-validation folds: the fold (0 .. folds-1) of every item, each fold holding about
    1/folds of every class. With ``group_by`` whole groups go to one fold (placed as the
    train/val/test split places them), so no held-out fold shares a source photo with its training folds;
    without it every item is a group of its own."""
    items = [(str(path), int(label)) for path, label in items]
    if int(folds) < 2:
        raise EdgeCNNError(f"cross-validation needs at least 2 folds; got {folds}")
    pattern = _compile(group_by) if group_by else re.compile(r"(?!)")  # matches nothing: one group per file
    labels = sorted({label for _, label in items})
    totals = np.array([sum(1 for _, label in items if label == wanted) for wanted in labels], dtype=float)
    assignment = _place_groups(items, np.tile(totals / folds, (folds, 1)), seed, pattern)
    empty = sorted(set(range(folds)) - set(assignment))
    if empty:
        raise EdgeCNNError(
            f"{len(items)} images in too few groups for {folds} folds (fold {empty[0]} would be empty): use fewer folds"
        )
    return assignment


def _place_groups(items: list[tuple[str, int]], target: np.ndarray, seed: int, pattern: re.Pattern) -> list[int]:
    """Row of ``target`` (images per part and class) for every item: whole groups placed greedily,
    largest first, where they bring the per-class counts closest to their targets."""
    labels = sorted({label for _, label in items})
    column = {label: i for i, label in enumerate(labels)}
    members: dict[str, list[int]] = defaultdict(list)
    for index, (path, _) in enumerate(items):
        members[group_key(pattern, path)].append(index)
    keys = sorted(members)
    counts = np.zeros((len(keys), len(labels)))
    for row, key in enumerate(keys):
        for index in members[key]:
            counts[row, column[items[index][1]]] += 1
    totals = counts.sum(axis=0)
    placed = np.zeros_like(target)
    weight = 1.0 / np.maximum(totals, 1) ** 2  # every class counts alike, however small
    order = np.random.default_rng(seed).permutation(len(keys))
    order = sorted(order, key=lambda row: -counts[row].sum())  # stable: ties stay in seeded order
    assignment = [0] * len(items)
    for row in order:
        before = ((placed - target) ** 2 * weight).sum(axis=1)
        after = ((placed + counts[row] - target) ** 2 * weight).sum(axis=1)
        best = int(np.argmin(after - before))
        placed[best] += counts[row]
        for index in members[keys[row]]:
            assignment[index] = best
    return assignment


def _check_not_empty(splits, fractions, items, classes, group_by) -> None:
    for split in SPLITS:
        if fractions[split] > 0 and not splits[split]:
            per_class: dict[str, int] = defaultdict(int)
            for _, label in items:
                per_class[classes[label] if classes else f"class {label}"] += 1
            grouped = f" and --group-by {group_by!r} makes whole groups move together" if group_by else ""
            raise EdgeCNNError(
                f"the {split} split (fraction {fractions[split]}) would be empty: images per class are "
                f"{dict(per_class)}{grouped}; add images, or set the {split} fraction to 0"
            )
