"""The enrollment study (``edge_cnn.studies.enrollment_protocol``, run as tools/enrollment_protocol.py) on a tiny
AT&T subset: 6 people (symlinks), 2 unseen, 1 epoch, TFLite only.

The accuracy of a 1-epoch model is not the point: the protocol must keep the unseen people out of training,
use the same probes for every k, measure every artifact and k, reuse its finished run, and refuse bad input.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

PEOPLE = ["s01", "s02", "s03", "s04", "s05", "s06"]
ROW_KEYS = ("Top-1 (%)", "Correct at threshold (%)", "Unknown (%)", "Wrong accepted (%)")


def _run_tool(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tools" / "enrollment_protocol.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)


def _att_subset(root: Path, shared_data: Path, people: list[str]) -> Path:
    root.mkdir()
    for person in people:
        (root / person).symlink_to(shared_data / "att_faces" / person, target_is_directory=True)
    return root


def _split_people(split_csv: Path) -> set[str]:
    lines = split_csv.read_text().splitlines()[1:]
    return {Path(line.rsplit(",", 1)[0]).parent.name for line in lines}


@pytest.mark.slow
def test_protocol_keeps_unseen_people_out_and_measures_every_artifact_and_k(tmp_path, shared_data):
    att = _att_subset(tmp_path / "att", shared_data, PEOPLE)
    out = tmp_path / "out"
    quick = ["--att", att, "--out", out, "--unseen", 2, "--epochs", 1, "--formats", "tflite"]
    done = _run_tool(*quick)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "enrollment_protocol.json").read_text())

    training, unseen = report["split"]["training"], report["split"]["unseen"]
    assert len(unseen) == 2 and len(training) == 4
    assert not set(training) & set(unseen) and sorted(training + unseen) == PEOPLE
    run = out / "run"
    assert json.loads((run / "labels.json").read_text()) == training  # the model never saw an unseen person
    for split in ("train", "val", "test"):
        assert _split_people(run / "splits" / f"{split}.csv") <= set(training)

    for person in unseen:  # the first 3 of the order may be enrolled, the other 7 are every k's probes
        plan = report["enrollment"][person]
        assert len(plan["pool"]) == 3 and len(plan["probes"]) == 7
        files = {Path(p).name for p in plan["pool"] + plan["probes"]}
        assert files == {p.name for p in (shared_data / "att_faces" / person).glob("*.png")}

    rows = report["rows"]
    assert {(r["Artifact"], r["k (enrolled/person)"]) for r in rows} == {
        (artifact, k) for artifact in ("tflite fp32", "tflite int8") for k in (1, 2, 3)}
    assert len(rows) == 6
    for row in rows:
        assert row["People"] == 2 and row["Probes"] == 14
        assert all(0.0 <= row[key] <= 100.0 for key in ROW_KEYS)
        assert row["Correct at threshold (%)"] <= row["Top-1 (%)"]
        shares = row["Correct at threshold (%)"] + row["Unknown (%)"] + row["Wrong accepted (%)"]
        assert shares == pytest.approx(100, abs=0.05)
    from edge_cnn.face.gallery import DEFAULT_THRESHOLD

    assert report["threshold"] == DEFAULT_THRESHOLD  # the face gallery's default
    markdown = (out / "enrollment_protocol.md").read_text()
    assert markdown.count("| tflite fp32 |") == 3 and markdown.count("| tflite int8 |") == 3

    again = _run_tool(*quick)  # the finished run is reused, and the measurement is deterministic
    assert again.returncode == 0, again.stderr[-3000:]
    assert "reusing the finished run" in again.stdout and "training small_convnet" not in again.stdout
    assert json.loads((out / "enrollment_protocol.json").read_text())["rows"] == rows

    other = _run_tool(*quick[:-2], "--seed", 1)  # another split cannot reuse a run of other people
    assert other.returncode == 2 and "holds a run of other people" in other.stderr


def test_too_few_people_or_a_missing_folder_exit_2_with_a_clear_message(tmp_path, shared_data):
    att = _att_subset(tmp_path / "att", shared_data, PEOPLE[:3])
    few = _run_tool("--att", att, "--out", tmp_path / "out", "--unseen", 2)
    assert few.returncode == 2
    assert "3 identity folder(s)" in few.stderr and "needs at least 4" in few.stderr
    assert "Traceback" not in few.stderr

    missing = _run_tool("--att", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert missing.returncode == 2
    assert f"--att {tmp_path / 'nowhere'} is not a folder" in missing.stderr and "Traceback" not in missing.stderr
    assert not (tmp_path / "out").exists()  # nothing written for bad input
