"""`edgecnn detect` with a real exported window classifier (the tiny red/blue square model)."""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_cnn.cli import main


@pytest.fixture(scope="module")
def square_export(tiny_run_dir, tmp_path_factory):
    from edge_cnn.export import export

    run = tmp_path_factory.mktemp("detect") / "run"
    shutil.copytree(tiny_run_dir, run)
    export(run, format=("tflite",))
    return run / "export"


def _tile(colour, seed):
    rng = np.random.default_rng(seed)
    tile = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
    tile[12:20, 12:20] = colour
    return tile


def test_detect_finds_the_red_tile(square_export, tmp_path):
    red, blue = (230, 40, 40), (40, 40, 230)
    scene = np.concatenate([np.concatenate([_tile(red, 1), _tile(blue, 2)], 1), np.concatenate([_tile(blue, 3), _tile(blue, 4)], 1)], 0)
    Image.fromarray(scene).save(tmp_path / "scene.png")
    Image.fromarray(scene[:20]).save(tmp_path / "too_small.png")
    out = tmp_path / "out"
    args = ["detect", str(square_export), str(tmp_path / "scene.png"), str(tmp_path / "too_small.png"),
            "--out", str(out), "--positive", "red", "--stride", "32", "--scale-step", "3", "--threshold", "0.5"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2  # one image was bad ...
    assert "smaller than the 32x32 window" in result.output and "Traceback" not in result.output
    record = json.loads((out / "scene.json").read_text())  # ... the other was still processed
    assert [(b["x"], b["y"], b["w"], b["h"]) for b in record["boxes"]] == [(0, 0, 32, 32)]
    assert record["boxes"][0]["score"] > 0.9
    annotated = np.asarray(Image.open(out / "scene.png"))
    assert annotated.shape == (64, 64, 3) and tuple(annotated[0, 16]) == (255, 40, 40)  # the drawn box edge
    assert not (out / "too_small.json").exists()


def test_detect_unknown_positive_class(square_export, tmp_path):
    Image.fromarray(_tile((230, 40, 40), 0)).save(tmp_path / "a.png")
    result = CliRunner().invoke(main, ["detect", str(square_export), str(tmp_path / "a.png"), "--out", str(tmp_path), "--positive", "person"])
    assert result.exit_code == 2 and "'person' is not one of the model's labels" in result.output


def test_detect_writes_one_result_per_input_when_names_repeat(square_export, tmp_path):
    """a/scene.png and b/scene.png mirror their folders under --out; scene.jpg beside scene.png gets -2."""
    red, blue = _tile((230, 40, 40), 1), _tile((40, 40, 230), 2)
    for folder, tile in (("a", red), ("b", blue)):
        (tmp_path / folder).mkdir()
        Image.fromarray(tile).save(tmp_path / folder / "scene.png")
    Image.fromarray(blue).save(tmp_path / "a" / "scene.jpg", quality=95)
    inputs = [tmp_path / "a" / "scene.png", tmp_path / "b" / "scene.png", tmp_path / "a" / "scene.jpg"]
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["detect", str(square_export), *map(str, inputs), "--out", str(out), "--positive", "red"])
    assert result.exit_code == 0, result.output
    written = {name: json.loads((out / f"{name}.json").read_text()) for name in ("a/scene", "b/scene", "a/scene-2")}
    assert [written[name]["path"] for name in ("a/scene", "b/scene", "a/scene-2")] == list(map(str, inputs))
    assert [len(written[name]["boxes"]) for name in ("a/scene", "b/scene", "a/scene-2")] == [1, 0, 0]
    assert all((out / f"{name}.png").is_file() for name in written)
    assert f"results saved to {out}" in result.stdout
    usage = " ".join(CliRunner().invoke(main, ["detect", "--help"]).output.split())
    assert "relative to the inputs' common folder" in usage and "-2, -3" in usage  # the rule is documented
