"""Scan an ImageFolder tree: classes, readable images, and every file that will be skipped.

Each image is decoded once up front (Pillow ``verify`` then a full ``load``, the decoder
``PreprocessSpec.load_image`` uses), so a bad file is reported with its reason before training
starts instead of crashing an epoch or silently shrinking the data set.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from edge_cnn.errors import EdgeCNNError, ImageError
from edge_cnn.preprocess import IMAGE_SUFFIXES, check_pixels, is_image_file, too_large_error

SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
LAYOUT_HINT = "use one sub-folder per class (e.g. DIR/cat/*.png, DIR/dog/*.png)"


@dataclasses.dataclass
class ScanResult:
    """What a data folder holds: class names, readable (path, class index) items, skipped files."""

    root: Path
    classes: list[str]
    items: list[tuple[str, int]]
    skipped: list[dict[str, str]]
    presplit: dict[str, list[tuple[str, int]]] | None = None

    def class_counts(self, items: list[tuple[str, int]] | None = None) -> dict[str, int]:
        counts = {name: 0 for name in self.classes}
        for _, label in self.items if items is None else items:
            counts[self.classes[label]] += 1
        return counts


def scan_folder(root: str | os.PathLike) -> ScanResult:
    """Scan ``root`` (ImageFolder, or ``train/ val/ test/`` sub-folders each an ImageFolder)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise EdgeCNNError(f"data folder {root} does not exist: pass a folder with one sub-folder per class")
    folders = _visible_dirs(root)
    split_dirs = _split_dirs(root, folders)
    if split_dirs is None:
        classes, items, skipped = _scan_image_folder(root)
        return ScanResult(root, classes, items, skipped)
    classes, train, skipped = _scan_image_folder(split_dirs["train"])
    presplit = {"train": train, "val": [], "test": []}
    for split in ("val", "test"):
        if split in split_dirs:
            presplit[split], bad = _scan_split_folder(split_dirs[split], classes)
            skipped.extend(bad)
    items = presplit["train"] + presplit["val"] + presplit["test"]
    return ScanResult(root, classes, items, skipped, presplit)


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _split_dirs(root: Path, folders: list[Path]) -> dict[str, Path] | None:
    """{split: folder} when ``root`` is pre-split (train/ plus val/ or test/), else None."""
    found = {}
    for folder in folders:
        for split, names in SPLIT_FOLDERS.items():
            if folder.name.lower() in names:
                found[split] = folder
    if "train" not in found or len(found) < 2:
        return None
    others = [f.name for f in folders if f not in found.values()]
    if others:
        raise EdgeCNNError(
            f"data folder {root} has train/ val/ test/ sub-folders and also {others}: "
            "move those into the split folders or remove them"
        )
    return found


def _scan_image_folder(folder: Path) -> tuple[list[str], list[tuple[str, int]], list[dict[str, str]]]:
    class_dirs = _visible_dirs(folder)
    if not class_dirs:
        raise EdgeCNNError(f"data folder {folder} has no class sub-folders: {LAYOUT_HINT}")
    if len(class_dirs) == 1:
        raise EdgeCNNError(
            f"data folder {folder} has a single class folder ({class_dirs[0].name}): "
            f"a classifier needs at least two; {LAYOUT_HINT}"
        )
    classes = [d.name for d in class_dirs]
    items, skipped = _check_files(_class_files(folder, classes))
    skipped.extend(_loose_files(folder))
    counts = {name: 0 for name in classes}
    for _, label in items:
        counts[classes[label]] += 1
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        bad = sum(1 for s in skipped for name in empty if Path(s["path"]).is_relative_to(folder / name))
        raise EdgeCNNError(
            f"class folder(s) {[str(folder / name) for name in empty]} hold no readable image"
            + (f" ({bad} unreadable file(s) skipped)" if bad else "")
            + ": add images or remove the folder"
        )
    return classes, items, skipped


def _scan_split_folder(folder: Path, classes: list[str]) -> tuple[list[tuple[str, int]], list[dict[str, str]]]:
    """A val/ or test/ folder: its classes must be among train/'s; a class may be absent."""
    names = [d.name for d in _visible_dirs(folder)]
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise EdgeCNNError(
            f"{folder} has class folder(s) {unknown} that {folder.parent / 'train'} lacks: "
            "every class needs training images"
        )
    items, skipped = _check_files(_class_files(folder, classes, present=names))
    return items, skipped + _loose_files(folder)


def _class_files(folder: Path, classes: list[str], present: list[str] | None = None) -> list[tuple[Path, int]]:
    """Every visible file below each class folder (recursively), sorted, with its class index."""
    files = []
    for label, name in enumerate(classes):
        if present is not None and name not in present:
            continue
        for dirpath, dirnames, filenames in os.walk(folder / name):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files.extend((Path(dirpath) / f, label) for f in sorted(filenames) if not f.startswith("."))
    return files


def _loose_files(folder: Path) -> list[dict[str, str]]:
    """Images lying beside the class folders belong to no class: report them, never guess.

    Other files there (README, SOURCE.txt, LICENSE) are documentation, not data.
    """
    return [
        {"path": str(p), "reason": "image outside any class folder"}
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".") and is_image_file(p)
    ]


def _check_files(files: list[tuple[Path, int]]) -> tuple[list[tuple[str, int]], list[dict[str, str]]]:
    """Decode every file in a thread pool (Pillow releases the GIL while decoding)."""
    with ThreadPoolExecutor(max_workers=min(16, 2 * (os.cpu_count() or 1))) as pool:
        reasons = list(pool.map(image_problem, [path for path, _ in files]))
    items, skipped = [], []
    for (path, label), reason in zip(files, reasons):
        if reason is None:
            items.append((str(path), label))
        else:
            skipped.append({"path": str(path), "reason": reason})
    return items, skipped


def image_problem(path: Path) -> str | None:
    """Why ``path`` cannot be used as an image, or None when it decodes completely."""
    if not is_image_file(path):
        return f"not an image file (suffix {path.suffix or 'none'!r}; images end in {', '.join(IMAGE_SUFFIXES)})"
    if not path.is_file():
        return "not a regular file (a broken link?)"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    try:
        with Image.open(path) as pil:
            check_pixels(path, pil.width, pil.height)
            pil.verify()  # chunk checksums; verify does not decode, so a full load follows
        with Image.open(path) as pil:
            pil.load()
    except ImageError as exc:
        return str(exc)
    except Image.DecompressionBombError as exc:
        return str(too_large_error(path, f"over Pillow's decompression-bomb limit ({exc})"))
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the file is unusable
        return f"cannot be decoded ({type(exc).__name__}: {exc})"
    return None
