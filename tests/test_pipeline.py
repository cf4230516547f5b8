"""`edgecnn pipeline` on the embedded face data with tiny settings: every stage, one summary."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from edge_cnn.cli import main
from edge_cnn.manifest import load_manifest


# What TensorFlow, CUDA, LiteRT and the converters write on their own: absl-style prefixes
# (I0000 00:00:..., E0000 ...), their notices, the converter's MLIR summary and its UserWarning.
NATIVE_NOISE = re.compile(r"^[IWEF]\d{4} |absl::|cuda|XNNPACK|fully_quantize|Statistics for quantized|NodeDef",
                          re.IGNORECASE | re.MULTILINE)


def test_pipeline_face_end_to_end(tmp_path):
    """Run as a user runs it (a real process, output to pipes): every stage, a summary, and nothing on
    stderr but our own lines: no native log noise, no progress-bar backspaces in a non-terminal run."""
    out = tmp_path / "face"
    env = {key: value for key, value in os.environ.items() if key != "CUDA_VISIBLE_DEVICES"}  # as a user has it
    result = subprocess.run([sys.executable, "-m", "edge_cnn.cli", "pipeline", "--out", str(out), "--epochs", "3",
                             "--runs", "5"], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not NATIVE_NOISE.search(result.stderr), result.stderr
    assert "\b" not in result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    artifacts = [row["artifact"] for row in summary["rows"]]
    assert artifacts[0].startswith("keras")  # the baseline comes first
    assert {"tflite fp32", "tflite int8", "onnx fp32", "onnx int8"} <= set(artifacts)
    for row in summary["rows"]:
        assert row["status"] in ("OK", "WARN") and row["p50_ms"] > 0
    exported = {row["artifact"]: row for row in summary["rows"] if not row["artifact"].startswith("keras")}
    assert exported["tflite fp32"]["agreement_pct"] == 100.0
    assert exported["tflite int8"]["size_mb"] < 0.5 * exported["tflite fp32"]["size_mb"]
    manifest = load_manifest(out / "train" / "export")
    assert {(a.format, a.precision) for a in manifest.artifacts} == {
        ("tflite", "fp32"), ("tflite", "int8"), ("onnx", "fp32"), ("onnx", "int8")}
    assert manifest.labels == ["face", "non_face"]
    for name in ("summary.md", "bench.json", "bench.md"):
        assert (out / name).is_file()
    assert "summary:" in result.stdout and "tflite int8" in result.stdout
    assert (out / "bench.png").read_bytes()[:4] == b"\x89PNG"
    # It ends with where everything is and what to run next, on this run's own files.
    assert f"results saved to {out}" in result.stdout
    predict = next(line.split() for line in result.stdout.splitlines() if line.strip().startswith("edgecnn predict"))
    assert predict[2] == str(out / "train" / "export") and Path(predict[3]).is_file()


def test_pipeline_refuses_unknown_target_and_existing_run(tmp_path):
    result = CliRunner().invoke(main, ["pipeline", "--target", "cats"])
    assert result.exit_code == 2 and "cats" in result.output
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "model.keras").write_text("a finished run")
    result = CliRunner().invoke(main, ["pipeline", "--out", str(tmp_path), "--epochs", "1"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_an_out_holding_a_pipeline_run_is_refused_before_training(tmp_path):
    (tmp_path / "summary.json").write_text("{}")
    result = CliRunner().invoke(main, ["pipeline", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "already holds a pipeline run" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
