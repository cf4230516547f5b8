"""Face-verification pairs in the LFW ``pairs.txt`` format, and keeping their people out of training.

A verification score is only honest when the model never trained on the people it is tested on
(LFW View 2: "a model must never train on the people of a fold it is tested on"). This module reads
the pairs file strictly — a wrong count, an unknown person or a missing image would silently shift
the folds or shrink the test — and names the people of chosen folds so that ``exclude_people`` can
remove them from an identity-folder training set (``--exclude-pairs pairs.txt --test-folds 6-10``).

Format (View 2): a header ``<folds> <pairs per fold>`` (``10 300``), then per fold that many matched
lines ``<name> <i> <j>`` followed by that many mismatched lines ``<name1> <i> <name2> <j>``; fields
are separated by tabs or spaces, and image ``i`` of a person is ``<root>/<name>/<name>_<iiii>.jpg``
(1-based, four digits). Pure Python: reading pairs never loads TensorFlow.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from edge_cnn.errors import EdgeCNNError

IMAGE_SUFFIX = ".jpg"
MATCHED_FIELDS = 3  # name i j
MISMATCHED_FIELDS = 4  # name1 i name2 j
FORMAT_HINT = (
    "LFW View 2 format: a header '<folds> <pairs per fold>', then per fold the matched lines "
    "'<name> <i> <j>' followed by the mismatched lines '<name1> <i> <name2> <j>'"
)


@dataclasses.dataclass(frozen=True)
class Pair:
    """One line of the pairs file: two images, whether they show the same person, and the fold."""

    path_a: str
    path_b: str
    person_a: str
    person_b: str
    same: bool
    fold: int  # 1-based
    line: int  # 1-based line number in the pairs file


@dataclasses.dataclass
class Pairs:
    """Every pair of a pairs file, in file order (fold by fold, matched before mismatched)."""

    source: Path
    folds: int
    per_fold: int  # matched pairs per fold, and as many mismatched
    pairs: list[Pair]

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[Pair]:
        return iter(self.pairs)

    def in_folds(self, folds: Iterable[int]) -> list[Pair]:
        wanted = set(folds)
        return [pair for pair in self.pairs if pair.fold in wanted]


def read_pairs(pairs_txt: str | os.PathLike, images_root: str | os.PathLike) -> Pairs:
    """Read and check a pairs file against the image folder: every line's shape, the counts per fold,
    every person's folder and every image file. The first problem raises one ``EdgeCNNError``
    naming the file, the line and the fix."""
    source = Path(pairs_txt).expanduser()
    root = Path(images_root).expanduser()
    if not source.is_file():
        raise EdgeCNNError(f"pairs file {source} does not exist: pass the LFW pairs.txt (View 2)")
    if not root.is_dir():
        raise EdgeCNNError(f"image folder {root} does not exist: pass the folder holding one sub-folder per person")
    try:
        lines = source.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeCNNError(f"{source} cannot be read as text ({exc}): pass the LFW pairs.txt (View 2)") from None
    while lines and not lines[-1].strip():
        lines.pop()
    folds, per_fold = _header(source, lines)
    rows = [_fields(source, number, text) for number, text in enumerate(lines[1:], start=2)]
    _check_runs(source, rows, folds, per_fold)
    images = _PersonImages(source, root)
    pairs = []
    for index, (number, fields) in enumerate(rows):
        fold = index // (2 * per_fold) + 1
        if len(fields) == MATCHED_FIELDS:
            name_a, first, second = fields
            name_b = name_a
        else:
            name_a, first, name_b, second = fields
            if name_a == name_b:
                raise EdgeCNNError(
                    f"{source}:{number}: mismatched pair names {name_a} twice: a mismatched line needs two "
                    "different people; move it to the matched lines as '<name> <i> <j>' or fix a name"
                )
        path_a = images.path(number, name_a, first)
        path_b = images.path(number, name_b, second)
        pairs.append(Pair(path_a, path_b, name_a, name_b, len(fields) == MATCHED_FIELDS, fold, number))
    return Pairs(source, folds, per_fold, pairs)


def _header(source: Path, lines: list[str]) -> tuple[int, int]:
    if not lines:
        raise EdgeCNNError(f"{source}:1: the file is empty: it needs the {FORMAT_HINT}")
    fields = lines[0].split()
    try:
        folds, per_fold = (int(field) for field in fields)
    except ValueError:
        raise EdgeCNNError(
            f"{source}:1: header {lines[0].strip()!r} is not two whole numbers: write '<folds> <pairs per fold>' "
            f"(e.g. '10 300') as the first line ({FORMAT_HINT})"
        ) from None
    if folds < 1 or per_fold < 1:
        raise EdgeCNNError(f"{source}:1: header {lines[0].strip()!r} needs positive counts: e.g. '10 300'")
    return folds, per_fold


def _fields(source: Path, number: int, text: str) -> tuple[int, list[str]]:
    """(line number, fields) of one pair line, or the error saying what its shape should be."""
    fields = text.split()
    if len(fields) not in (MATCHED_FIELDS, MISMATCHED_FIELDS):
        raise EdgeCNNError(
            f"{source}:{number}: {len(fields)} field(s) in {text.strip()!r}: a pair line is '<name> <i> <j>' "
            "(same person) or '<name1> <i> <name2> <j>' (different people)"
        )
    return number, fields


def _check_runs(source: Path, rows: list[tuple[int, list[str]]], folds: int, per_fold: int) -> None:
    """Each fold is ``per_fold`` matched lines, then ``per_fold`` mismatched lines: the first run
    of one kind that is too short or too long is reported at the line where it goes wrong."""
    header = f"the header says {folds} folds of {per_fold} matched then {per_fold} mismatched pairs"
    for index, (number, fields) in enumerate(rows):
        if index >= 2 * folds * per_fold:
            raise EdgeCNNError(
                f"{source}:{number}: {len(rows) - index} line(s) after the last fold ({header}): "
                "remove them or fix the header"
            )
        fold, position = divmod(index, 2 * per_fold)
        expected = MATCHED_FIELDS if position < per_fold else MISMATCHED_FIELDS
        if len(fields) != expected:
            kind = "matched" if expected == MATCHED_FIELDS else "mismatched"
            place = position + 1 if expected == MATCHED_FIELDS else position - per_fold + 1
            raise EdgeCNNError(
                f"{source}:{number}: expected {kind} pair {place} of fold {fold + 1} but the line has "
                f"{len(fields)} fields ({header}): the fold has the wrong number of pairs; fix the fold or the header"
            )
    if len(rows) < 2 * folds * per_fold:
        last = rows[-1][0] if rows else 1
        raise EdgeCNNError(
            f"{source}:{last}: the file ends after {len(rows)} pair line(s) but {header} "
            f"({2 * folds * per_fold} lines): add the missing pairs or fix the header"
        )


class _PersonImages:
    """Paths of a person's images, each folder listed once, with errors naming the pairs file line."""

    def __init__(self, source: Path, root: Path):
        self.source = source
        self.root = root
        self.listed: dict[str, set[str]] = {}

    def path(self, number: int, name: str, index_text: str) -> str:
        try:
            index = int(index_text)
        except ValueError:
            index = 0
        if index < 1:
            raise EdgeCNNError(
                f"{self.source}:{number}: image number {index_text!r} of {name} is not a whole number >= 1: "
                "image numbers count from 1 (image 1 is <name>_0001.jpg)"
            )
        files = self._files(number, name)
        file_name = f"{name}_{index:04d}{IMAGE_SUFFIX}"
        if file_name not in files:
            raise EdgeCNNError(
                f"{self.source}:{number}: image {index} of {name} ({self.root / name / file_name}) does not exist "
                f"({len(files)} {IMAGE_SUFFIX} image(s) in that folder): fix the image number or add the image"
            )
        return str(self.root / name / file_name)

    def _files(self, number: int, name: str) -> set[str]:
        if name not in self.listed:
            folder = self.root / name
            if name in (".", "..") or "/" in name or not folder.is_dir():
                raise EdgeCNNError(
                    f"{self.source}:{number}: unknown person {name!r}: {folder} is not a folder; "
                    f"fix the name or pass the image folder that holds it"
                )
            self.listed[name] = {entry.name for entry in os.scandir(folder) if entry.is_file()}
        return self.listed[name]


def fold_people(pairs: Pairs, folds: Iterable[int]) -> set[str]:
    """Every person named in a pair of those folds (either side of matched and mismatched pairs)."""
    wanted = list(folds)
    unknown = sorted(set(wanted) - set(range(1, pairs.folds + 1)))
    if unknown:
        raise EdgeCNNError(f"fold(s) {unknown} are not in {pairs.source}: it has folds 1-{pairs.folds}")
    return {name for pair in pairs.in_folds(wanted) for name in (pair.person_a, pair.person_b)}


def parse_folds(text: str, folds: int = 10, flag: str = "--test-folds") -> list[int]:
    """'6-10', '1,3,5' or '1-3,7' -> sorted distinct fold numbers, each within 1..``folds``."""
    hint = f"{flag} takes fold numbers 1-{folds} as a range or a comma list (e.g. 6-10 or 1,3,5)"
    chosen: set[int] = set()
    for part in str(text).split(","):
        ends = part.strip().split("-")
        try:
            if len(ends) > 2:
                raise ValueError
            low, high = int(ends[0]), int(ends[-1])
        except ValueError:
            raise EdgeCNNError(f"{flag} {text!r}: {part.strip()!r} is not a fold number or range; {hint}") from None
        if not 1 <= low <= high <= folds:
            raise EdgeCNNError(f"{flag} {text!r}: {part.strip()!r} is not a rising range within 1-{folds}; {hint}")
        chosen.update(range(low, high + 1))
    return sorted(chosen)


def exclude_people(
    items: Sequence[tuple[str, int]], classes: Sequence[str], people: Iterable[str]
) -> tuple[list[str], list[tuple[str, int]]]:
    """Drop every image of ``people`` from identity-folder items ((path, class index), class = person).

    Returns the remaining people and their items with class indices renumbered 0..n-1 in the order
    of ``classes``, so a classifier or margin head has no row for a person it never sees. People
    absent from ``classes`` are ignored: a training set usually shares few people with the test set.
    """
    dropped = set(people)
    kept_classes = [name for name in classes if name not in dropped]
    if not kept_classes:
        raise EdgeCNNError(f"excluding the test folds' people leaves none of the {len(classes)} training people: "
                           "train on other people or test on other folds")
    new_index = {old: new for new, old in enumerate(i for i, name in enumerate(classes) if name not in dropped)}
    kept_items = [(path, new_index[label]) for path, label in items if label in new_index]
    return kept_classes, kept_items
