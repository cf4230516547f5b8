"""Shared fixtures. Tests never download anything; ../shared/data tests skip where it is absent."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before any test imports TensorFlow
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (pedestrian/, att_faces/); the test is skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def _edgecnn_home(tmp_path_factory):
    """Embedded datasets are materialised under a per-session folder, not the user's cache."""
    os.environ["EDGECNN_HOME"] = str(tmp_path_factory.mktemp("edgecnn_home"))


def make_square_images(root: Path, per_class: int = 24, size: int = 32, seed: int = 0) -> list[tuple[Path, int]]:
    """A synthetic task with a known answer: a bright red square (class 'red') or blue square
    ('blue') at a random place on a dark, noisy RGB image. ImageFolder layout under ``root``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    items = []
    for label, name in enumerate(("red", "blue")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            side = size // 4
            y = int(rng.integers(0, size - side))
            x = int(rng.integers(0, size - side))
            image[y : y + side, x : x + side] = (230, 40, 40) if label == 0 else (40, 40, 230)
            path = root / name / f"{name}_{i:03d}.png"
            Image.fromarray(image).save(path)
            items.append((path, label))
    return items


def tiny_classifier(input_shape, num_classes: int, name: str = "tiny", filters=(8, 16)):
    """Conv-BN-ReLU-pool per entry of ``filters``, then the classify task's head (``head_pool`` GAP,
    ``head_dropout``, ``predictions`` softmax), as the trainer builds it: the one tiny test model."""
    from edge_cnn.keras import keras, layers
    from edge_cnn.tasks import get_task

    inputs = keras.Input(input_shape, name="image")
    h = inputs
    for i, width in enumerate(filters):
        h = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"conv{i}")(h)
        h = layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(h)
        h = layers.ReLU(name=f"relu{i}")(h)
        h = layers.MaxPooling2D(2, name=f"pool{i}")(h)
    outputs = get_task("classify").build_head(h, num_classes, dropout=0.1, pooling="avg")
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture(scope="session")
def square_images(tmp_path_factory) -> Path:
    """Folder of the synthetic red/blue square images (24 per class, 32x32 RGB)."""
    root = tmp_path_factory.mktemp("squares")
    make_square_images(root)
    return root


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory, square_images) -> Path:
    """A finished run directory with a tiny trained Conv-BN-ReLU model (>= 90% on its own test split).

    Read-only for tests: copy it (shutil.copytree) before writing into it.
    """
    import numpy as np

    from edge_cnn.keras import keras
    from edge_cnn.preprocess import PreprocessSpec
    from edge_cnn.run_dir import RunDir

    keras.utils.set_random_seed(0)
    spec = PreprocessSpec(height=32, width=32, color="rgb")
    files = sorted(square_images.glob("*/*.png"))
    labels = ["red", "blue"]
    items = [(p, labels.index(p.parent.name)) for p in files]
    x = spec([p for p, _ in items])
    y = np.array([label for _, label in items])
    model = tiny_classifier(spec.input_shape, len(labels))
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=30, batch_size=16, verbose=0, shuffle=True)
    run = RunDir(tmp_path_factory.mktemp("run") / "tiny")
    run.path.mkdir(parents=True)
    model.save(run.model_path)
    run.write_labels(labels)
    spec.save(run.preprocess_path)
    order = np.random.default_rng(0).permutation(len(items))
    shuffled = [(str(items[i][0]), items[i][1]) for i in order]
    run.write_split("train", shuffled[:32])
    run.write_split("val", shuffled[32:40])
    run.write_split("test", shuffled[40:])
    return run.path


def write_grey_png(path: Path, side: int) -> Path:
    """A black side x side grey PNG written row by row: a 20000x20000 decompression bomb (400 MB
    decoded) costs a few hundred KB on disk and no image in memory."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte 0, then the pixels
    pixels = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="session")
def bomb(tmp_path_factory) -> Path:
    """A decompression bomb: a 20000x20000 PNG of a few hundred KB."""
    return write_grey_png(tmp_path_factory.mktemp("bomb") / "bomb.png", 20_000)


def pytest_addoption(parser):
    parser.addoption("--heavy", action="store_true",
                     help="also run the tests marked heavy (the largest exports, weight loads and counts: about 20 minutes "
                     "more on 2 cores)")


def pytest_collection_modifyitems(config, items):
    """The heavy tests are skipped, with the way to run them, unless --heavy is given: CI's budget."""
    if config.getoption("--heavy"):
        return
    skip = pytest.mark.skip(reason="heavy: run with pytest --heavy")
    for item in items:
        if "heavy" in item.keywords:
            item.add_marker(skip)
