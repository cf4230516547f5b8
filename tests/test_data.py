"""Data stage: embedded data, folder scanning, splits, the tf.data pipeline and augmentation."""

import json
import re
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_square_images
from edge_cnn.data import (
    grouped_folds,
    EMBEDDED_DATASETS,
    AugmentConfig,
    make_dataset,
    resolve_data,
    scan_folder,
    split_items,
    write_data_report,
)
from edge_cnn.errors import EdgeCNNError
from edge_cnn.preprocess import PreprocessSpec


def _batches(dataset):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(xs), np.concatenate(ys)


@pytest.fixture(scope="module")
def squares(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data_squares")
    make_square_images(root, per_class=16, size=16, seed=1)
    return root


# --- embedded data ---------------------------------------------------------------------
def test_embedded_face_resolves_offline_once():
    assert "face" in EMBEDDED_DATASETS
    folder = resolve_data("face")
    scan = scan_folder(folder)
    assert scan.classes == ["face", "non_face"]
    assert scan.class_counts() == {"face": 100, "non_face": 100}
    assert scan.skipped == []
    with Image.open(scan.items[0][0]) as image:
        assert image.size == (25, 25) and image.mode == "L"
    first = Path(scan.items[0][0])
    stamp = first.stat().st_mtime_ns
    assert resolve_data("face") == folder  # reused, not rewritten
    assert first.stat().st_mtime_ns == stamp
    assert [p.name for p in folder.parent.iterdir()] == ["face"]  # no temp folder left behind


def test_resolve_data_names_a_missing_folder(tmp_path):
    with pytest.raises(EdgeCNNError, match=re.escape(str(tmp_path / "nope")) + ".*face"):
        resolve_data(str(tmp_path / "nope"))
    assert resolve_data(str(tmp_path)) == tmp_path


# --- scanning ---------------------------------------------------------------------------
def test_scan_reports_bad_files_and_keeps_the_rest(tmp_path):
    make_square_images(tmp_path, per_class=5, size=16)
    good = (tmp_path / "red" / "red_000.png").read_bytes()
    (tmp_path / "red" / "truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "red" / "text.jpg").write_text("this is not a JPEG")
    (tmp_path / "blue" / "empty.png").write_bytes(b"")
    (tmp_path / "blue" / "notes.txt").write_text("labelling notes")
    (tmp_path / "blue" / ".hidden.png").write_bytes(b"ignored")
    (tmp_path / "README.md").write_text("documentation beside the class folders is not data")
    shutil.copy(tmp_path / "red" / "red_001.png", tmp_path / "loose.png")

    scan = scan_folder(tmp_path)

    assert scan.classes == ["blue", "red"]
    assert scan.class_counts() == {"blue": 5, "red": 5}
    reasons = {Path(s["path"]).name: s["reason"] for s in scan.skipped}
    assert set(reasons) == {"truncated.png", "text.jpg", "empty.png", "notes.txt", "loose.png"}
    assert "truncated" in reasons["truncated.png"].lower()
    assert "cannot identify" in reasons["text.jpg"]
    assert "empty" in reasons["empty.png"]
    assert "not an image" in reasons["notes.txt"]
    assert "outside any class folder" in reasons["loose.png"]
    assert all(scan.classes[label] == Path(path).parent.name for path, label in scan.items)
    assert scan.presplit is None


def test_scan_errors_name_the_folder_and_the_fix(tmp_path):
    with pytest.raises(EdgeCNNError, match="does not exist"):
        scan_folder(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    with pytest.raises(EdgeCNNError, match="no class sub-folders"):
        scan_folder(tmp_path / "flat")
    make_square_images(tmp_path / "one", per_class=3, size=8)
    shutil.rmtree(tmp_path / "one" / "blue")
    with pytest.raises(EdgeCNNError, match=r"single class folder \(red\).*at least two"):
        scan_folder(tmp_path / "one")
    make_square_images(tmp_path / "two", per_class=3, size=8)
    for file in (tmp_path / "two" / "blue").iterdir():
        file.write_bytes(b"broken")  # all files bad = an empty class
    with pytest.raises(EdgeCNNError, match=r"blue.*no readable image \(3 unreadable"):
        scan_folder(tmp_path / "two")


def test_scan_honours_presplit_folders(tmp_path):
    for split, count in (("train", 6), ("val", 2), ("test", 3)):
        make_square_images(tmp_path / split, per_class=count, size=8, seed=count)
    shutil.rmtree(tmp_path / "val" / "blue")  # a class may be absent from val/
    scan = scan_folder(tmp_path)
    assert scan.classes == ["blue", "red"]
    assert {s: len(items) for s, items in scan.presplit.items()} == {"train": 12, "val": 2, "test": 6}
    assert all(f"/{split}/" in path for split, items in scan.presplit.items() for path, _ in items)
    assert len(scan.items) == 20
    (tmp_path / "test" / "green").mkdir()
    shutil.copy(scan.items[0][0], tmp_path / "test" / "green" / "g.png")
    with pytest.raises(EdgeCNNError, match="green.*train"):
        scan_folder(tmp_path)
    shutil.rmtree(tmp_path / "test" / "green")
    (tmp_path / "extra").mkdir()
    with pytest.raises(EdgeCNNError, match=r"also \['extra'\]"):
        scan_folder(tmp_path)


# --- splits -----------------------------------------------------------------------------
def _items(per_class: dict[int, int]) -> list[tuple[str, int]]:
    return [(f"/d/c{label}/img_{i:03d}.png", label) for label, n in per_class.items() for i in range(n)]


def test_split_is_stratified_and_seeded():
    items = _items({0: 100, 1: 40})
    splits = split_items(items, val=0.2, test=0.1, seed=0)
    counts = {s: Counter(label for _, label in v) for s, v in splits.items()}
    assert counts == {"train": {0: 70, 1: 28}, "val": {0: 20, 1: 8}, "test": {0: 10, 1: 4}}
    assert sorted(sum(splits.values(), [])) == sorted(items)  # a partition
    assert split_items(items, val=0.2, test=0.1, seed=0) == splits
    assert split_items(items, val=0.2, test=0.1, seed=1)["test"] != splits["test"]
    assert split_items(items, val=0, test=0.25)["val"] == []


def test_split_errors_when_a_split_would_be_empty():
    with pytest.raises(EdgeCNNError, match=r"test split.*empty.*\{'a': 1, 'b': 1\}"):
        split_items(_items({0: 1, 1: 1}), val=0, test=0.2, classes=["a", "b"])
    with pytest.raises(EdgeCNNError, match="no training images"):
        split_items(_items({0: 5, 1: 5}), val=0.5, test=0.5)


def test_group_by_keeps_source_prefixes_apart():
    items = [(f"/d/person/{src}_{i:03d}.png", 1) for src in ("inria", "penn") for i in range(30)]
    items += [(f"/d/bg/{src}_{i:03d}.png", 0) for src in ("ade", "coco") for i in range(30)]
    splits = split_items(items, val=0, test=0.5, group_by=r"^([a-z]+)_")
    sources = {s: {Path(p).name.split("_")[0] for p, _ in v} for s, v in splits.items()}
    assert sources["train"].isdisjoint(sources["test"])
    assert {label for _, label in splits["test"]} == {0, 1}  # stratified as far as groups allow


def test_group_by_keeps_identities_together_and_varies_with_seed():
    items = [(f"/d/face/p{person:02d}_{shot}.png", 0) for person in range(20) for shot in range(5)]
    items += [(f"/d/other/o{person:02d}_{shot}.png", 1) for person in range(20) for shot in range(5)]
    splits = split_items(items, seed=0, group_by=r"^(\w\d+)_")
    owner = {}
    for split, members in splits.items():
        for path, _ in members:
            person = Path(path).name.split("_")[0]
            assert owner.setdefault(person, split) == split
    assert {s: len(v) for s, v in splits.items()} == {"train": 140, "val": 30, "test": 30}
    assert split_items(items, seed=1, group_by=r"^(\w\d+)_") != splits
    # a file the pattern does not match is a group of its own
    assert len(split_items(items, group_by=r"^nomatch")["test"]) == 30


# --- pipeline ---------------------------------------------------------------------------
@pytest.mark.parametrize("color", ["rgb", "grayscale"])
def test_eval_dataset_equals_the_spec_exactly(squares, color):
    scan = scan_folder(squares)
    items = scan.items[::3]
    spec = PreprocessSpec(12, 10, color=color, mean=0.5, std=0.25)
    dataset = make_dataset(items, spec, num_classes=2, batch_size=4, augment=AugmentConfig.photo_defaults())
    x, y = _batches(dataset)
    assert x.dtype == np.float32 and y.dtype == np.float32
    assert x.shape == (len(items), 12, 10, spec.channels)
    np.testing.assert_allclose(x, spec([p for p, _ in items]), atol=1e-6)
    np.testing.assert_array_equal(y, np.eye(2)[[label for _, label in items]])
    np.testing.assert_array_equal(_batches(dataset)[0], x)  # deterministic on a second pass


def test_rgb_spec_on_grey_files():
    items = scan_folder(resolve_data("face")).items[95:105]
    spec = PreprocessSpec(16, 16, color="rgb")
    x, y = _batches(make_dataset(items, spec, num_classes=2, batch_size=8))
    assert x.shape == (10, 16, 16, 3)
    np.testing.assert_allclose(x, spec([p for p, _ in items]), atol=1e-6)
    assert y.argmax(1).tolist() == [0] * 5 + [1] * 5


def _train_pixels(items, augment, seed=0):
    spec = PreprocessSpec(16, 16)
    return _batches(make_dataset(items, spec, 2, batch_size=8, training=True, augment=augment, seed=seed))


OPTIONS = {
    "rotation": 30, "width_shift": 0.2, "height_shift": 0.2, "shear": 20, "zoom": 0.3,
    "horizontal_flip": True, "brightness": 0.3, "contrast": 0.5, "cutout": 0.4,
}


@pytest.fixture(scope="module")
def plain_train(squares):
    """Training batches without augmentation: the reference the augmented ones are compared to."""
    items = scan_folder(squares).items
    return items, *_train_pixels(items, None)


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_each_augmentation_changes_training_images_within_range(plain_train, option):
    items, plain, labels = plain_train
    augmented, augmented_labels = _train_pixels(items, AugmentConfig(**{option: OPTIONS[option]}))
    np.testing.assert_array_equal(augmented_labels, labels)  # same seeded order, labels untouched
    assert augmented.shape == plain.shape and augmented.dtype == np.float32
    assert augmented.min() >= 0.0 and augmented.max() <= 1.0
    changed = [i for i in range(len(plain)) if not np.allclose(plain[i], augmented[i], atol=1e-5)]
    assert len(changed) >= len(plain) // 4
    if option == "horizontal_flip":
        for i in changed:
            np.testing.assert_allclose(augmented[i], plain[i][:, ::-1], atol=1e-6)
    if option == "cutout":
        for i in changed:
            erased = ~np.isclose(plain[i], augmented[i], atol=1e-6)
            assert np.all(augmented[i][erased] == 0.0)


def test_augmentation_is_seeded_differs_between_epochs_and_works_in_grey(squares):
    items = scan_folder(squares).items
    config = AugmentConfig.from_dict({**AugmentConfig.photo_defaults().to_dict(), "shear": 10, "cutout": 0.3})
    spec = PreprocessSpec(16, 16, color="grayscale", mean=0.5, std=0.5)  # grey model, RGB files
    def epochs():
        dataset = make_dataset(items, spec, 2, batch_size=8, training=True, augment=config, seed=4)
        return _batches(dataset)[0], _batches(dataset)[0]

    first, second = epochs()
    assert first.shape == (len(items), 16, 16, 1)
    low, high = spec.value_range()
    assert first.min() >= low and first.max() <= high
    assert not np.allclose(first, second)  # reshuffled and re-augmented each epoch
    again = epochs()
    np.testing.assert_array_equal(again[0], first)  # same seed, same images
    np.testing.assert_array_equal(again[1], second)


@pytest.mark.parametrize("mix", [{"mixup": 0.4}, {"cutmix": 1.0}, {"mixup": 0.4, "cutmix": 1.0}])
def test_mixup_and_cutmix_give_soft_labels_summing_to_one(plain_train, mix):
    items, plain, _ = plain_train
    x, y = _train_pixels(items, AugmentConfig(**mix))
    assert x.shape == plain.shape and y.shape == (len(items), 2)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-6)
    assert ((y > 1e-3) & (y < 1 - 1e-3)).any(axis=1).sum() >= 3  # some labels are really mixed
    assert x.min() >= 0.0 and x.max() <= 1.0


# --- grey and low-resolution cameras (grey, blur, downscale) -------------------------------
def _checkerboards(root: Path, count: int = 8, height: int = 32, width: int = 16) -> list[tuple[str, int]]:
    """1-pixel black/white checkerboards (two classes): all of their variance is high frequency."""
    board = ((np.indices((height, width)).sum(axis=0) % 2) * 255).astype(np.uint8)
    items = []
    for label in range(2):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            path = root / str(label) / f"{i}.png"
            Image.fromarray(np.repeat(board[:, :, None], 3, axis=2)).save(path)
            items.append((str(path), label))
    return items


def test_grey_acts_on_training_batches_only(squares):
    items = scan_folder(squares).items
    spec = PreprocessSpec(16, 16)
    config = AugmentConfig(grey=1.0)
    train = _batches(make_dataset(items, spec, 2, batch_size=8, training=True, augment=config))[0]
    assert np.allclose(train[..., 0], train[..., 1], atol=1e-6) and np.allclose(train[..., 1], train[..., 2], atol=1e-6)
    plain = _train_pixels(items, None)[0]  # the coloured squares: channels differ without grey
    assert not np.allclose(plain[..., 0], plain[..., 2], atol=1e-3)
    luma = plain @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(train[..., 0], luma, atol=1e-5)
    validation = _batches(make_dataset(items, spec, 2, batch_size=8, augment=config))[0]
    np.testing.assert_allclose(validation, spec([p for p, _ in items]), atol=1e-6)  # untouched
    assert all(not np.allclose(image[..., 0], image[..., 2], atol=1e-3) for image in validation)


def test_downscale_removes_fine_detail_and_keeps_the_shape(tmp_path):
    from edge_cnn.data.augment import DOWNSCALE_FACTORS

    assert DOWNSCALE_FACTORS[0] <= 2 and DOWNSCALE_FACTORS[1] >= 64 / 18  # reaches a 36x18 pedestrian
    items = _checkerboards(tmp_path)
    spec = PreprocessSpec(32, 16)
    plain = _batches(make_dataset(items, spec, 2, batch_size=4, training=True))[0]
    low = _batches(make_dataset(items, spec, 2, batch_size=4, training=True, augment=AugmentConfig(downscale=1.0)))[0]
    assert low.shape == plain.shape == (len(items), 32, 16, 3)
    assert low.min() >= 0.0 and low.max() <= 1.0
    assert plain.var(axis=(1, 2, 3)).min() > 0.2  # the board: 0 and 1
    assert low.var(axis=(1, 2, 3)).max() < 0.25 * plain.var()  # every image lost its 1-pixel detail
    np.testing.assert_allclose(low.mean(axis=(1, 2, 3)), 0.5, atol=0.05)  # area averaging keeps the mean


def test_camera_keys_at_zero_leave_pixels_untouched(tmp_path, squares):
    from edge_cnn.data.augment import pixel_augmenter

    items = _checkerboards(tmp_path) + [(str(p), l) for p, l in scan_folder(squares).items[:8]]
    spec = PreprocessSpec(16, 16)
    pixels = np.stack([spec.load_image(path) for path, _ in items]).astype(np.float32)
    off = AugmentConfig(grey=0.0, blur=0.0, downscale=0.0, contrast=1e-9)  # an active augmenter, camera keys 0
    np.testing.assert_allclose(np.asarray(pixel_augmenter(off, seed=3)(pixels)), pixels, atol=1e-3)
    on = AugmentConfig(grey=0.0, blur=0.0, downscale=1.0, contrast=1e-9)
    assert not np.allclose(np.asarray(pixel_augmenter(on, seed=3)(pixels)), pixels, atol=1.0)


def test_train_config_passes_camera_keys_to_the_classify_pipeline():
    from edge_cnn.train.config import TrainConfig

    config = TrainConfig(grey=0.3, downscale=0.25, blur=0.1)
    augment = AugmentConfig.from_dict(config.augment_values())
    assert (augment.grey, augment.downscale, augment.blur) == (0.3, 0.25, 0.1) and augment.changes_pixels
    assert not AugmentConfig.from_dict(TrainConfig(augment=True).augment_values()).grey  # no photo default
    resolved = config.resolved((32, 32)).to_dict()  # what the run's config.yaml records
    assert (resolved["grey"], resolved["downscale"], resolved["blur"]) == (0.3, 0.25, 0.1)
    with pytest.raises(EdgeCNNError, match="downscale is a probability"):
        AugmentConfig(downscale=1.5)


def test_augment_config_round_trip_and_unknown_keys():
    config = AugmentConfig.photo_defaults()
    assert config.active and not AugmentConfig().active
    assert AugmentConfig.from_dict(config.to_dict()) == config
    assert config.rotation == 10 and config.horizontal_flip and config.mixup == 0
    with pytest.raises(EdgeCNNError, match=r"unknown augmentation key\(s\) \['rotate'\].*rotation"):
        AugmentConfig.from_dict({"rotate": 10})
    with pytest.raises(EdgeCNNError, match="zoom is a fraction"):
        AugmentConfig(zoom=5)
    with pytest.raises(EdgeCNNError, match="brightness must be a number >= 0"):
        AugmentConfig.from_dict({"brightness": -0.1})


def test_data_report_lists_splits_and_skipped_files(tmp_path):
    make_square_images(tmp_path / "data", per_class=10, size=8)
    (tmp_path / "data" / "red" / "bad.png").write_bytes(b"\x89PNG broken")
    scan = scan_folder(tmp_path / "data")
    splits = split_items(scan.items, val=0.2, test=0.2)
    report = write_data_report(tmp_path / "data_report.json", scan, splits)
    assert json.loads((tmp_path / "data_report.json").read_text()) == report
    assert report["classes"] == ["blue", "red"]
    assert report["counts"] == {"images": 20, "skipped": 1, "per_class": {"blue": 10, "red": 10}}
    assert report["splits"]["test"] == {"images": 4, "per_class": {"blue": 2, "red": 2}}
    assert report["skipped"][0]["path"].endswith("bad.png") and "cannot be decoded" in report["skipped"][0]["reason"]


# --- real data --------------------------------------------------------------------------
SOURCE = re.compile(r"^(inria_neg|pennfudan_bg|pennfudan|inria)_")
PHOTO = r"^(?:pennfudan_(?:bg_)?)?([A-Za-z]+Ped\d+|inria_neg_[0-9a-z-]+_|inria_\D+\d+)"


@pytest.mark.shared_data
def test_grouped_folds_partition_keep_groups_whole_and_balance_classes():
    items = [(f"/d/face/p{person:02d}_{shot}.png", 0) for person in range(20) for shot in range(5)]
    items += [(f"/d/other/o{person:02d}_{shot}.png", 1) for person in range(10) for shot in range(5)]
    folds = grouped_folds(items, 5, seed=0, group_by=r"^(\w\d+)_")
    assert len(folds) == len(items) and set(folds) == set(range(5))
    owner = {}
    for (path, _), fold in zip(items, folds):
        assert owner.setdefault(Path(path).name.split("_")[0], fold) == fold  # a person never spans two folds
    per_class = Counter((fold, label) for (_, label), fold in zip(items, folds))
    assert all(per_class[(fold, 0)] == 20 and per_class[(fold, 1)] == 10 for fold in range(5))  # 1/5 of each class
    assert grouped_folds(items, 5, seed=1, group_by=r"^(\w\d+)_") != folds
    ungrouped = Counter((fold, label) for (_, label), fold in zip(items, grouped_folds(items, 3)))  # a group per file
    assert all(ungrouped[(fold, 0)] in (33, 34) and ungrouped[(fold, 1)] in (16, 17) for fold in range(3))
    with pytest.raises(EdgeCNNError, match="at least 2 folds"):
        grouped_folds(items, 1)
    with pytest.raises(EdgeCNNError, match="too few groups for 4 folds"):
        grouped_folds(items[:10], 4, group_by=r"^(\w\d+)_")  # two people, four folds


def test_pedestrian_scan_and_source_grouped_splits(shared_data):
    start = time.perf_counter()
    scan = scan_folder(shared_data / "pedestrian")
    seconds = time.perf_counter() - start
    print(f"\nscanned {len(scan.items)} pedestrian PNGs in {seconds:.2f} s")
    assert scan.class_counts() == {"background": 654, "person": 1631}
    assert scan.skipped == [] and seconds < 60

    splits = split_items(scan.items, val=0, test=0.3, group_by=SOURCE.pattern, classes=scan.classes)
    sources = {s: {SOURCE.match(Path(p).name).group(1) for p, _ in v} for s, v in splits.items() if v}
    assert sources["train"].isdisjoint(sources["test"])
    assert sources["train"] | sources["test"] == {"inria", "inria_neg", "pennfudan", "pennfudan_bg"}
    assert {label for _, label in splits["test"]} == {0, 1}

    # photo-level groups: a Penn-Fudan photo's people and background windows stay on one side
    splits = split_items(scan.items, group_by=PHOTO, classes=scan.classes)
    photo = re.compile(PHOTO)
    owner = {}
    for split, members in splits.items():
        for path, _ in members:
            assert owner.setdefault(photo.match(Path(path).name).group(1), split) == split
    for split, fraction in (("val", 0.15), ("test", 0.15)):
        assert abs(len(splits[split]) / len(scan.items) - fraction) < 0.02
