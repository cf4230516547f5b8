"""`edgecnn zoo` and `zoo show`: the numbers come from the builders, the cache is honest."""

import json

import pytest
from click.testing import CliRunner

from edge_cnn.cli import main
from edge_cnn.zoo import list_models, model_info, table
from edge_cnn.zoo.cli import human_count


def _invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_zoo_family_json_has_reference_numbers():
    result = _invoke("zoo", "--family", "mobilenet", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {"mobilenet_v1", "mobilenet_v2"}
    assert rows["mobilenet_v2"]["params"] == 3_504_872
    assert rows["mobilenet_v2"]["macs"] == pytest.approx(0.30e9, rel=0.05)
    assert rows["mobilenet_v1"]["input"] == "224x224x3" and rows["mobilenet_v1"]["family"] == "mobilenet"


def test_zoo_says_where_it_wrote_its_reports(tmp_path):
    result = _invoke("zoo", "--family", "lenet", "--json", "--md", str(tmp_path / "zoo.md"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["family"] == "lenet"  # stdout stays JSON
    assert f"wrote {tmp_path / 'zoo.md'}" in result.stderr and "lenet" in (tmp_path / "zoo.md").read_text()


def test_zoo_table_lists_every_model_and_caches(monkeypatch, tmp_path):
    """Every registered model gets a row; a second call reads the cache; editing the zoo invalidates it."""
    monkeypatch.setenv("EDGECNN_HOME", str(tmp_path))
    built = []

    def fake_row(name, input_shape=None):
        built.append(name)
        return {"family": model_info(name).family, "name": name, "params": len(name), "macs": 1, "input": "1x1x1"}

    monkeypatch.setattr(table, "profile_row", fake_row)
    rows = table.zoo_table()
    assert [r["name"] for r in rows] == list_models() and built == list_models()
    assert {"lenet5", "googlenet", "resnext101_32x8d", "se_resnet50", "densenet201", "efficientnet_b7"} <= set(built)
    built.clear()
    assert table.zoo_table() == rows and built == []
    monkeypatch.setattr(table, "source_digest", lambda: "edited")
    table.zoo_table(["lenet5"])
    assert built == ["lenet5"]


def test_zoo_in_a_log_prints_a_line_per_model_built_and_nothing_from_the_cache(monkeypatch, tmp_path):
    """Not a terminal: the first run's minutes of building show as plain lines on stderr (no bar, no
    backspaces); a run served by the cache adds nothing to the table."""
    monkeypatch.setenv("EDGECNN_HOME", str(tmp_path))
    monkeypatch.setattr(table, "profile_row", lambda name, input_shape=None: {
        "family": model_info(name).family, "name": name, "params": 1, "macs": 1, "input": "1x1x1"})
    first = _invoke("zoo", "--family", "resnet")
    names = list_models("resnet")
    assert first.exit_code == 0 and first.stderr.splitlines() == [
        f"profiled {name} ({index}/{len(names)})" for index, name in enumerate(names, 1)]
    again = _invoke("zoo", "--family", "resnet")
    assert again.exit_code == 0 and again.stderr == "" and "\b" not in first.output + again.output


def test_zoo_show_per_layer_table():
    result = _invoke("zoo", "show", "lenet5", "--input-size", "32x32", "--channels", "1", "--num-classes", "10", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["params"] == 61_706
    conv = [row for row in data["layers"] if row["type"] == "Conv2D"]
    assert conv[0]["kernel/stride"] == "5x5" and conv[0]["output shape"] == "28x28x6"
    assert conv[0]["macs"] == 28 * 28 * 6 * 25
    text = _invoke("zoo", "show", "lenet5", "--input-size", "32", "--channels", "1")
    assert text.exit_code == 0 and "total:" in text.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["zoo", "show", "resnet19"], "unknown model 'resnet19'"),
        (["zoo", "show", "resnet18", "--input-size", "16x16"], "at least 32x32"),
        (["zoo", "show", "resnet18", "--input-size", "big"], "HxW"),
        (["zoo", "--family", "transformer"], "no family 'transformer'"),
    ],
)
def test_zoo_bad_input_exits_2(args, message):
    result = _invoke(*args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_human_count():
    assert human_count(1_814_000_000) == "1.81 G"
    assert human_count(416_000) == "416 K"
    assert human_count(12) == "12"


def test_build_loads_weights_files(tmp_path):
    import numpy as np

    from edge_cnn.errors import EdgeCNNError
    from edge_cnn.zoo import build

    source = build("small_convnet", input_shape=(16, 16, 3), num_classes=3)
    source.save(tmp_path / "m.keras")
    source.save_weights(tmp_path / "m.h5")
    for file in ("m.keras", "m.h5"):
        loaded = build("small_convnet", input_shape=(16, 16, 3), num_classes=3, weights=tmp_path / file)
        for a, b in zip(source.get_weights(), loaded.get_weights()):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(EdgeCNNError, match="does not fit"):
        build("small_convnet", input_shape=(16, 16, 3), num_classes=5, weights=tmp_path / "m.h5")
    with pytest.raises(EdgeCNNError, match="does not exist"):
        build("small_convnet", input_shape=(16, 16, 3), weights=tmp_path / "missing.h5")
