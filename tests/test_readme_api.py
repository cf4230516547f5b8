"""README's "Python API" block runs as written and returns the objects its table documents."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_api_block_runs_and_returns_the_documented_objects(tmp_path, monkeypatch, capsys):
    from edge_cnn.bench import BenchReport
    from edge_cnn.export import ExportResult
    from edge_cnn.pipeline import PipelineResult
    from edge_cnn.runtime import Predictor
    from edge_cnn.train import RunResult

    section = README.read_text().split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert isinstance(namespace["run"], RunResult) and (tmp_path / namespace["run"].run_dir / "model.keras").is_file()
    assert isinstance(namespace["exported"], ExportResult) and not namespace["exported"].failed
    assert isinstance(namespace["report"], BenchReport) and len(namespace["report"].rows()) == 5  # Keras + 4
    assert isinstance(namespace["predictor"], Predictor)
    assert isinstance(namespace["summary"], PipelineResult) and namespace["summary"].files["summary"].is_file()
    printed = capsys.readouterr().out
    assert "runs/api-face" in printed and "('onnx', 'int8', 'OK')" in printed
