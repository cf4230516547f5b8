"""``edge_cnn.studies``: one list of studies, ``edgecnn study`` and the ``tools/*.py`` entry points, the shared pieces.

The studies themselves run in test_compare_tools.py and test_enrollment_protocol.py; here: that every study is
reachable by name and by script, that help and bad input behave like the other verbs (help without TensorFlow,
one ``error:`` line and exit code 2), and that what the studies share measures what it says.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

from edge_cnn.studies import STUDIES, load_study, summary


def _edgecnn(*args) -> subprocess.CompletedProcess:
    """``edgecnn ARGS`` in a fresh process (its command path reads ``python -m edge_cnn.cli``)."""
    return subprocess.run([sys.executable, "-m", "edge_cnn.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def test_every_study_has_a_docstring_a_main_and_a_thin_tools_script():
    scripts = {}
    for path in sorted((REPO / "tools").glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        assert "sys.path" not in path.read_text()
        assert len(path.read_text().splitlines()) <= 15, f"{path.name} should only call its study's main"
        scripts[path.stem] = imported
    for name, module_name in STUDIES.items():
        module = load_study(name)
        assert callable(module.main) and module.__doc__.startswith(summary(name))
        assert [module_name] in scripts.values(), f"no tools/ script runs {module_name}"
    assert len(scripts) == len(STUDIES)


def test_study_help_lists_every_study_without_tensorflow():
    code = ("import sys; from click.testing import CliRunner; from edge_cnn.cli import main; "
            "result = CliRunner().invoke(main, ['study', '--help']); print(result.output); "
            "print('tensorflow loaded:', 'tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "tensorflow loaded: False" in done.stdout
    for name in STUDIES:
        assert f"  {name} " in done.stdout


@pytest.mark.parametrize("name", ["pedestrian", "enrollment"])
def test_study_name_help_is_the_studys_own(name):
    done = _edgecnn("study", name, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ") and f" study {name} [-h]" in done.stdout.splitlines()[0]
    assert "examples:" in done.stdout and f"edgecnn study {name} --" in done.stdout


def test_study_help_keeps_continued_examples_whole_and_out_of_the_description():
    """A docstring example broken with a trailing backslash stays one example, its second line indented."""
    from edge_cnn.studies.shared import study_parser

    doc = ("Why this study.\n\n"
           "    edgecnn study x --out a\n"
           "    nice edgecnn study x --run r \\\n"
           "        --photos p   # both lines\n"
           "More text.\n")
    parser = study_parser(doc, prog="edgecnn study x")
    assert parser.description == "Why this study.\n\nMore text."
    assert parser.epilog.splitlines() == ["examples:", "  edgecnn study x --out a",
                                          "  nice edgecnn study x --run r \\", "      --photos p   # both lines"]


def test_unknown_study_and_bad_arguments_are_one_error_line_and_exit_2():
    unknown = _edgecnn("study", "nonsense", "--out", "x")
    assert unknown.returncode == 2
    lines = unknown.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "nonsense" in lines[0]
    assert all(name in lines[0] for name in STUDIES)

    bad = _edgecnn("study", "cv", "--folds", "two", "--out", "x")
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("error: ") and " study cv: argument --folds: invalid int value" in lines[0]

    missing = subprocess.run([sys.executable, str(REPO / "tools" / "compare_faces.py"), "--id-run", "x"],
                             capture_output=True, text=True, timeout=120, cwd=REPO)
    lines = missing.stderr.strip().splitlines()
    assert missing.returncode == 2 and len(lines) == 1 and "compare_faces.py" in lines[0]
    assert "Traceback" not in missing.stderr


def test_interleaved_medians_time_every_method_once_per_round_in_turn():
    from edge_cnn.studies.shared import interleaved_medians

    calls = []
    values = {"a": iter([3.0, 1.0, 2.0]), "b": iter([10.0, 30.0, 20.0])}
    timers = {name: (lambda name=name: calls.append(name) or next(values[name])) for name in values}
    assert interleaved_medians(timers, rounds=3) == {"a": 2.0, "b": 20.0}
    assert calls == ["a", "b"] * 3


def test_batched_latency_divides_each_call_by_its_windows():
    import numpy as np

    from edge_cnn.studies.compare_pedestrian import batched_latency_ms

    shapes = []
    windows = [np.zeros((4, 2, 3), np.uint8)] * 10
    assert batched_latency_ms(lambda stack: shapes.append(stack.shape), windows, batch=4, rounds=2) >= 0
    # 10 windows: two full batches of 4 (the partial one is left out); one warm-up call, then 2 rounds of 2
    assert shapes == [(4, 4, 2, 3)] * 5


def test_first_per_class_and_comma_lists():
    from edge_cnn.studies.shared import comma_list, first_per_class

    items = [("a0", 0), ("b0", 1), ("a1", 0), ("a2", 0), ("b1", 1)]
    assert first_per_class(items, 2) == [("a0", 0), ("b0", 1), ("a1", 0), ("b1", 1)]
    assert first_per_class(items, None) == items
    assert comma_list(" tflite, ,onnx ") == ["tflite", "onnx"]


def test_accuracy_report_reads_its_data_folders_from_the_recipes():
    from edge_cnn.recipes import list_recipes, load_recipe
    from edge_cnn.studies.accuracy_report import TARGETS, data_folder

    assert set(TARGETS) <= set(list_recipes())
    for name in TARGETS:
        recipe_data = Path(load_recipe(name)["data"])
        assert data_folder(name, None) == recipe_data
        assert data_folder(name, Path("/data")) == Path("/data") / recipe_data.name


def test_deploy_study_times_every_artifact_against_hand_made_files_and_names_the_default(tmp_path):
    """One tiny zoo model: edgecnn's four artifacts and the two hand-made conversions are timed side by
    side, the row marked default is the artifact the runtime itself picks, and both operator profiles
    (onnxruntime's, LiteRT's operators each alone) line up fp32 and int8 kernels of the same layer type."""
    import json

    from edge_cnn.runtime.artifacts import resolve
    from edge_cnn.studies.deploy_choice import MIXED, main, operator_family

    assert main(["--work", str(tmp_path), "--models", "small_convnet:32", "--runs", "5", "--rounds", "1",
                 "--mixed", "MaxPool"]) == 0
    rows = json.loads((tmp_path / "deploy_artifacts.json").read_text())["rows"]
    assert {row["Artifact"] for row in rows} == {
        "edgecnn tflite fp32", "edgecnn tflite int8", "edgecnn onnx fp32", "edgecnn onnx int8",
        "edgecnn onnx int8, MaxPool float", "hand-made tf2onnx fp32", "hand-made TFLiteConverter fp32"}
    mixed = json.loads((tmp_path / "small_convnet-32" / "export_float_MaxPool" / "manifest.json").read_text())
    assert [artifact["optimization"] for artifact in mixed["artifacts"] if artifact["precision"] == "int8"] == [
        {"float_nodes": 0, "float_ops": ["MaxPool"]}]
    # "fastest" is among the default export's and the hand-made files; the mixed export may beat it
    assert min(row["x fastest"] for row in rows if not row["Artifact"].startswith(MIXED)) == 1.0
    assert all(row["p50 (ms)"] > 0 for row in rows)
    pick = resolve(tmp_path / "small_convnet-32" / "export")
    assert [row["Artifact"] for row in rows if row["Default"]] == [f"edgecnn {pick.artifact.format} {pick.artifact.precision}"]
    summary = json.loads((tmp_path / "deploy_summary.json").read_text())
    assert summary["cpu"] and summary["rows"][0]["Default / fastest"] >= 1.0
    p50 = {row["Artifact"]: row["p50 (ms)"] for row in rows}
    assert summary["rows"][0]["Best mixed / best fp32"] == pytest.approx(
        p50["edgecnn onnx int8, MaxPool float"] / min(p50["edgecnn tflite fp32"], p50["edgecnn onnx fp32"]))
    profile = json.loads((tmp_path / "deploy_operators.json").read_text())["rows"]
    operators = {row["Operator"]: row for row in profile if row["Measured by"] == "onnxruntime profile"}
    assert operators["Conv"]["fp32 ms"] > 0 and operators["Conv"]["int8 ms"] > 0  # QLinearConv counted as Conv
    alone = {row["Operator"]: row for row in profile if row["Measured by"] == "LiteRT, each operator alone"}
    assert alone["CONV_2D"]["fp32 ms"] > 0 and alone["CONV_2D"]["int8 ms"] > 0
    kinds = [op for op in alone if not op.startswith("(")]
    assert alone["(sum of operators)"]["fp32 ms"] == pytest.approx(sum(alone[op]["fp32 ms"] or 0 for op in kinds))
    whole = next(row for row in profile if row["Measured by"] == "LiteRT, whole file")
    assert whole["fp32 ms"] > 0 and whole["int8 ms"] > 0
    assert [operator_family(op) for op in ("QLinearConv", "NhwcMaxPool", "QuantizeLinear", "ReorderInput", "Add")] == [
        "Conv", "MaxPool", "(quantize/dequantize)", "(layout reorder)", "Add"]
    # a second run over the same --work only times again, and needs no TensorFlow (as on a device)
    kept = {path: path.stat().st_mtime_ns for path in (tmp_path / "small_convnet-32").rglob("*")
            if path.suffix in (".onnx", ".tflite", ".keras")}
    (tmp_path / "deploy_artifacts.json").unlink()  # so the rows read below are the second run's
    retime = ("import sys; sys.modules['tensorflow'] = None; from edge_cnn.studies.deploy_choice import main; "
              f"sys.exit(main(['--work', {str(tmp_path)!r}, '--models', 'small_convnet:32', '--runs', '5', "
              "'--rounds', '1', '--mixed', 'MaxPool']))")
    done = subprocess.run([sys.executable, "-c", retime], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    again = json.loads((tmp_path / "deploy_artifacts.json").read_text())["rows"]
    assert {row["Artifact"] for row in again} == {row["Artifact"] for row in rows}
    assert kept and all(path.stat().st_mtime_ns == mtime for path, mtime in kept.items())


def test_deploy_study_times_a_pruned_export_of_the_run_alongside(tiny_run_dir, square_images, tmp_path, capsys):
    """--prune-channels: the run's thinner export is timed in the same rounds, the summary holds the speed-up
    over the run's TFLite fp32 and the accuracy lost, both computed from the rows, and with --photos the same
    ratio for detection end to end; without --run (or --photos without a pruning) it is refused."""
    import json

    from edge_cnn.studies.deploy_choice import main

    assert main(["--work", str(tmp_path), "--models", "", "--run", str(tiny_run_dir), "--prune-channels", "0.5",
                 "--prune-epochs", "1", "--runs", "5", "--rounds", "1", "--photos", str(square_images),
                 "--photo-count", "2"]) == 0
    rows = {row["Artifact"]: row for row in json.loads((tmp_path / "deploy_artifacts.json").read_text())["rows"]}
    assert {"edgecnn pruned tflite fp32", "edgecnn pruned onnx int8", "edgecnn tflite fp32"} <= set(rows)
    assert all(rows[name]["Test accuracy (%)"] is not None for name in rows if name.startswith("edgecnn"))
    (summary,) = json.loads((tmp_path / "deploy_summary.json").read_text())["rows"]
    pruned = summary["Pruned default"]
    assert rows[pruned]["Default"] and summary["TFLite fp32 / pruned default"] == pytest.approx(
        rows["edgecnn tflite fp32"]["p50 (ms)"] / rows[pruned]["p50 (ms)"])
    assert summary["Pruned accuracy drop (pp)"] == pytest.approx(
        rows["edgecnn tflite fp32"]["Test accuracy (%)"] - rows[pruned]["Test accuracy (%)"])
    today_ms, pruned_ms = summary["Detect ms/photo, TFLite fp32"], summary["Detect ms/photo, pruned default"]
    assert today_ms > 0 and pruned_ms > 0 and summary["Detect: TFLite fp32 / pruned"] == pytest.approx(today_ms / pruned_ms)
    pruned_export = tmp_path / tiny_run_dir.name / "export_prune_channels50_prune_epochs1"
    manifest = json.loads((pruned_export / "manifest.json").read_text())
    assert manifest["artifacts"][0]["optimization"]["method"] == "prune_channels"
    with pytest.raises(SystemExit) as exited:
        main(["--work", str(tmp_path), "--prune-channels", "0.5"])
    assert exited.value.code == 2 and "--run" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["--work", str(tmp_path), "--run", str(tiny_run_dir), "--prune-channels", "0.5", "--target-latency", "1"])
    assert exited.value.code == 2 and "give one" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["--work", str(tmp_path), "--run", str(tiny_run_dir), "--photos", str(square_images)])
    assert exited.value.code == 2 and "--prune-channels" in capsys.readouterr().err
