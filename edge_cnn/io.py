"""Atomic file writing and hashing: an interrupted write never leaves a half file."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import itertools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from edge_cnn.errors import OutputError


def ensure_writable_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Prove that ``path`` is, or can become, a folder where files can be written, before any work.

    A verb calls this first, so a read-only folder or an ``--out`` that names (or lies under) a
    file costs nothing: one ``OutputError`` naming the folder and the fix. Nothing is created:
    the check writes and removes one temporary file in the nearest folder that exists.
    """
    folder = Path(path)
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        where = "is a file" if existing == folder else f"lies under the file {existing}"
        raise OutputError(f"{flag} {folder} {where}, not a folder: choose a folder path")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".edgecnn-write-check."):
            pass
    except OSError as exc:
        raise OutputError(f"{flag} {folder} is not writable ({exc.strerror or exc}): choose a writable folder") from None
    return folder


def ensure_writable_file(path: str | os.PathLike, flag: str) -> Path:
    """The folder of an output file must be writable and the path must not be a folder."""
    final = Path(path)
    if final.is_dir():
        raise OutputError(f"{flag} {final} is a folder: give a file name")
    ensure_writable_dir(final.parent, flag)
    return final


def numbered_dir(base: str | os.PathLike) -> Path:
    """``base`` when it does not exist yet, else the first free ``base-2``, ``base-3``, ... : a second run
    to a default folder never lands on the first one's files (Ultralytics' ``runs/train2``)."""
    base = Path(base)
    candidates = (base.with_name(f"{base.name}-{n}") if n > 1 else base for n in itertools.count(1))
    return next(path for path in candidates if not path.exists())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The temporary name keeps the suffix (tools such as Keras pick the format by it).
    A directory written there is moved into place as a whole. An ``OSError`` on the way
    (read-only folder, full disk, a folder where the file should go) becomes one
    ``OutputError`` naming the file; whatever stood at ``path`` before is left as it was.
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".tmp{final.suffix}", dir=final.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {final} ({exc.strerror or exc}): choose a writable folder") from None
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"nothing was written to {tmp} for {final}")
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as exc:
        raise OutputError(f"cannot write {final} ({exc.strerror or exc}): free disk space or choose a writable folder") from None
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gzip_size(path: str | os.PathLike) -> int:
    """Bytes of the file gzip-compressed (level 9): what pruning and clustering shrink."""
    return len(gzip.compress(Path(path).read_bytes(), compresslevel=9))


def home_dir() -> Path:
    """edgecnn's own cache folder: ``$EDGECNN_HOME`` or ``~/.cache/edgecnn``."""
    return Path(os.environ.get("EDGECNN_HOME") or Path.home() / ".cache" / "edgecnn")


def output_stems(paths: list[Path]) -> list[Path]:
    """Where each image's results go under --out, without suffix: its path relative to the common
    folder of all inputs (``a/scene.png``, ``b/scene.png`` -> ``a/scene``, ``b/scene``), with ``-2``,
    ``-3``... appended when two inputs still meet (``scene.png`` and ``scene.jpg`` in one folder)."""
    folders = [Path(os.path.abspath(path)).parent for path in paths]
    common = Path(os.path.commonpath(folders)) if folders else Path()
    stems, taken = [], set()
    for path, folder in zip(paths, folders):
        stem = candidate = folder.relative_to(common) / path.stem
        number = 1
        while str(candidate).lower() in taken:  # lower case: Scene.png and scene.png meet on macOS and Windows
            number += 1
            candidate = stem.with_name(f"{stem.name}-{number}")
        taken.add(str(candidate).lower())
        stems.append(candidate)
    return stems
