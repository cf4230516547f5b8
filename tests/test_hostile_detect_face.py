"""Hostile input to `edgecnn detect` and `edgecnn face`: each case ends in one `error:` line naming the
thing and the fix, exit code 2, no traceback, and the valid items of the same call still processed."""

import json
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_square_images, write_grey_png

from edge_cnn.cli import main
from edge_cnn.face import Gallery


@pytest.fixture(scope="module")
def export_dir(tiny_run_dir, tmp_path_factory):
    """The tiny red/blue model exported with an embedding output: a window classifier for detect
    (class output) and an embedder for face (embedding output), in one export."""
    from edge_cnn.export import export

    run = tmp_path_factory.mktemp("hostile") / "run"
    shutil.copytree(tiny_run_dir, run)
    export(run, format=("tflite",), embedding=True)
    return run / "export"


@pytest.fixture
def squares(tmp_path) -> list[Path]:
    """Four valid 32x32 images: two with a red square, two with a blue one."""
    return [path for path, _ in make_square_images(tmp_path / "squares", per_class=2, seed=3)]


def assert_one_error(result, *names: str, fix: str) -> str:
    """Exit 2, no traceback, exactly one `error:` line, naming every one of ``names`` and saying ``fix``."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and (result.exception is None or isinstance(result.exception, SystemExit))
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert all(name in errors[0] for name in names), errors[0]
    assert fix in errors[0], errors[0]
    return errors[0]


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


# --- detect ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag, value",
    [("--threshold", "1.5"), ("--threshold", "-0.1"), ("--nms", "0"), ("--nms", "1.2"), ("--scale-step", "1"),
     ("--max-windows", "0"), ("--threshold", "high"), ("--stride", "0"), ("--window", "0x64")],
)
def test_detect_rejects_an_out_of_range_option_before_any_work(flag, value, squares, tmp_path):
    out = tmp_path / "out"
    result = run("detect", tmp_path / "no_model", squares[0], "--out", out, flag, value)
    assert_one_error(result, flag, value, fix="--help")
    assert not out.exists()  # failed at the option, before --out, the model or any image


@pytest.mark.parametrize("out", ["afile", "afile/sub"])
def test_detect_out_that_is_a_file_fails_before_inference(out, squares, tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    result = run("detect", tmp_path / "no_model", squares[0], "--out", tmp_path / out)
    assert_one_error(result, "--out", "afile", fix="choose a")  # about --out, not the (missing) model


@pytest.fixture
def read_only_folders(monkeypatch):
    """The write check of every output folder fails as in a read-only folder (tests run as root,
    where chmod stops no write)."""
    import edge_cnn.io

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(edge_cnn.io.tempfile, "TemporaryFile", refuse)


def test_detect_unwritable_out_fails_before_inference(squares, tmp_path, read_only_folders):
    result = run("detect", tmp_path / "no_model", squares[0], "--out", tmp_path / "out")
    assert_one_error(result, "--out", str(tmp_path / "out"), fix="choose a writable folder")


def test_detect_corrupt_and_bomb_images_fail_alone(export_dir, squares, bomb, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    bomb = shutil.copy(bomb, tmp_path / "bomb.png")  # beside the others: results mirror the inputs' common folder
    out = tmp_path / "out"
    result = run("detect", export_dir, squares[0], tmp_path / "broken.png", bomb, squares[1], "--out", out, "--positive", "red")
    error = assert_one_error(result, "broken.png", "bomb.png", fix="fix or remove them")
    assert "2 inputs failed" in error and "the other 2 input(s) were written" in error
    assert [line.startswith("skipped:") for line in result.output.splitlines()].count(True) == 2
    for path in squares[:2]:  # the valid images around the bad ones were still detected
        stem = out / path.relative_to(tmp_path).with_suffix("")
        assert stem.with_suffix(".json").is_file() and stem.with_suffix(".png").is_file()
    assert not list(out.glob("broken*")) and not list(out.glob("bomb*"))


def test_detect_one_missing_image_is_the_error_line(export_dir, squares, tmp_path):
    result = run("detect", export_dir, squares[0], tmp_path / "gone.png", "--out", tmp_path / "out", "--positive", "red")
    assert_one_error(result, "gone.png", fix="the other 1 input(s) were written")
    assert (tmp_path / "out" / f"{squares[0].stem}.json").is_file()


def test_detect_an_8000x8000_image_is_capped_not_endless(export_dir, tmp_path, monkeypatch):
    import edge_cnn.preprocess

    monkeypatch.setattr(edge_cnn.preprocess, "MAX_IMAGE_PIXELS", 8000 * 8000)  # at the limit, not over it
    monkeypatch.delenv("EDGECNN_MAX_IMAGE_PIXELS", raising=False)
    big = write_grey_png(tmp_path / "big.png", 8000)
    started = time.perf_counter()
    result = run("detect", export_dir, big, "--out", tmp_path / "out", "--positive", "blue")  # few hits on black
    elapsed = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    assert elapsed < 60, f"{elapsed:.0f} s"  # uncapped: about 690,000 windows
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "big.png" in warnings[0] and "--max-windows" in warnings[0]
    record = json.loads((tmp_path / "out" / "big.json").read_text())
    assert record["warning"] in warnings[0]


# --- face ----------------------------------------------------------------------------------------


@pytest.fixture
def enrolled(export_dir, tmp_path) -> Path:
    """A gallery of the people 'red' and 'blue', enrolled from a copy of the export (tests may alter it)."""
    model = shutil.copytree(export_dir, tmp_path / "model")
    make_square_images(tmp_path / "people", per_class=3, seed=1)
    gallery = tmp_path / "gallery.npz"
    result = run("face", "enroll", tmp_path / "people", "--model", model, "--out", gallery)
    assert result.exit_code == 0, result.output
    return gallery


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_face_truncated_or_corrupt_gallery(damage, enrolled, squares):
    data = bytearray(enrolled.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:  # a flipped bit inside the centroids: the zip's CRC no longer matches
        data[bytes(data).index(b"centroids.npy") + 200] ^= 0xFF
    enrolled.write_bytes(bytes(data))
    result = run("face", "identify", "--gallery", enrolled, squares[0])
    assert_one_error(result, str(enrolled), fix="re-run `edgecnn face enroll`")


def test_face_gallery_of_a_changed_model_is_refused(enrolled, squares):
    model_file = Path(Gallery.load(enrolled).model)
    assert model_file.is_absolute() and model_file.is_file()
    model_file.write_bytes(model_file.read_bytes() + b"\0")  # replaced since enrollment
    result = run("face", "identify", "--gallery", enrolled, squares[0])
    assert_one_error(result, str(model_file), fix="re-enroll")


def test_face_identify_from_another_folder_finds_the_model(export_dir, tmp_path, monkeypatch, squares):
    shutil.copytree(export_dir, tmp_path / "model")
    make_square_images(tmp_path / "people", per_class=2, seed=1)
    monkeypatch.chdir(tmp_path)  # enroll with relative paths ...
    assert run("face", "enroll", "people", "--model", "model", "--out", "g.npz").exit_code == 0
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # ... identify from another folder, no --model
    result = run("face", "identify", "--gallery", tmp_path / "g.npz", squares[0], "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["identity"] == squares[0].parent.name


def test_face_identify_bad_images_fail_alone(enrolled, squares, bomb, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    result = run("face", "identify", "--gallery", enrolled, "--json", squares[0], bomb, tmp_path / "broken.png", squares[2])
    assert_one_error(result, "bomb.png", "broken.png", fix="fix or remove them")
    identified = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in identified] == [str(squares[0]), str(squares[2])]
    assert [r["identity"] for r in identified] == ["red", "blue"]


def test_face_enroll_empty_folder(export_dir, tmp_path):
    (tmp_path / "people" / "nobody").mkdir(parents=True)
    result = run("face", "enroll", tmp_path / "people", "--model", export_dir, "--out", tmp_path / "g.npz")
    assert_one_error(result, str(tmp_path / "people"), fix="GALLERY/<name>/*.png")
    assert not (tmp_path / "g.npz").exists()


def test_face_enroll_person_folder_without_images(export_dir, tmp_path):
    make_square_images(tmp_path / "people", per_class=2, seed=1)
    (tmp_path / "people" / "zed").mkdir()
    (tmp_path / "people" / "zed" / "notes.txt").write_text("no images here")
    result = run("face", "enroll", tmp_path / "people", "--model", export_dir, "--out", tmp_path / "g.npz")
    assert_one_error(result, str(tmp_path / "people" / "zed"), fix="add images of zed or remove the folder")
    assert Gallery.load(tmp_path / "g.npz").names == ["blue", "red"]  # the others were enrolled and written


@pytest.mark.parametrize("out, fix", [("afile/g.npz", "choose a folder path"), ("adir", "give a file name")])
def test_face_enroll_unwritable_out_fails_before_work(out, fix, tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "adir").mkdir()
    result = run("face", "enroll", tmp_path / "people", "--model", tmp_path / "no_model", "--out", tmp_path / out)
    assert_one_error(result, "--out", str(tmp_path / out.split("/")[0]), fix=fix)  # about --out, not the missing model


def test_face_enroll_read_only_folder_loses_nothing(enrolled, tmp_path, request):
    before = enrolled.read_bytes()
    request.getfixturevalue("read_only_folders")  # after enrolling the gallery once
    result = run("face", "enroll", tmp_path / "people", "--model", tmp_path / "model", "--out", enrolled)
    assert_one_error(result, "--out", str(enrolled.parent), fix="choose a writable folder")
    assert enrolled.read_bytes() == before
