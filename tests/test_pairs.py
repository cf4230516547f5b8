"""LFW-style verification pairs: strict reading, fold people, fold parsing and keeping test people out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_cnn.data.pairs import exclude_people, fold_people, parse_folds, read_pairs
from edge_cnn.errors import EdgeCNNError

# Images per person of the tiny tree (empty files: read_pairs checks that they exist, not their pixels).
PEOPLE = {"Ann_Lee": 3, "Bob_Ray": 2, "Cy_Young": 1, "Dee_Dee": 2, "Eve_Arden": 1, "Fay_Wray": 2}
# 2 folds of 2 matched + 2 mismatched pairs; fold 1 is Ann/Bob/Cy, fold 2 is Dee/Eve/Fay.
GOOD_LINES = [
    "2\t2",
    "Ann_Lee\t1\t3", "Bob_Ray\t1\t2",
    "Ann_Lee\t2\tCy_Young\t1", "Bob_Ray\t2\tCy_Young\t1",
    "Dee_Dee\t1\t2", "Fay_Wray\t1\t2",
    "Dee_Dee\t1\tEve_Arden\t1", "Eve_Arden\t1\tFay_Wray\t2",
]


@pytest.fixture
def tiny_lfw(tmp_path) -> Path:
    for name, count in PEOPLE.items():
        (tmp_path / "images" / name).mkdir(parents=True)
        for index in range(1, count + 1):
            (tmp_path / "images" / name / f"{name}_{index:04d}.jpg").touch()
    return tmp_path


def write_pairs(root: Path, lines: list[str]) -> Path:
    path = root / "pairs.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reads_pairs_with_labels_folds_and_paths(tiny_lfw):
    pairs = read_pairs(write_pairs(tiny_lfw, GOOD_LINES), tiny_lfw / "images")
    assert (pairs.folds, pairs.per_fold, len(pairs)) == (2, 2, 8)
    assert [p.same for p in pairs] == [True, True, False, False] * 2
    assert [p.fold for p in pairs] == [1] * 4 + [2] * 4
    first, third = pairs.pairs[0], pairs.pairs[2]
    assert Path(first.path_a) == tiny_lfw / "images/Ann_Lee/Ann_Lee_0001.jpg"
    assert Path(first.path_b) == tiny_lfw / "images/Ann_Lee/Ann_Lee_0003.jpg"
    assert (third.person_a, third.person_b, third.line) == ("Ann_Lee", "Cy_Young", 4)
    assert fold_people(pairs, [1]) == {"Ann_Lee", "Bob_Ray", "Cy_Young"}
    assert fold_people(pairs, [1, 2]) == set(PEOPLE)
    with pytest.raises(EdgeCNNError, match="fold"):
        fold_people(pairs, [3])


@pytest.mark.parametrize(
    "line_number, replacement, expected",
    [
        (3, "Zed_Zero\t1\t2", "unknown person 'Zed_Zero'"),
        (2, "Ann_Lee\t1\t4", "image 4 of Ann_Lee"),
        (5, "Bob_Ray\t2\tCy_Young\t2", "image 2 of Cy_Young"),
        (4, "Ann_Lee\t0\tCy_Young\t1", "not a whole number >= 1"),
        (4, "Ann_Lee\t2\tAnn_Lee\t1", "names Ann_Lee twice"),
        (3, "Bob_Ray\t1", "2 field(s)"),
    ],
)
def test_bad_pair_line_names_file_and_line(tiny_lfw, line_number, replacement, expected):
    lines = list(GOOD_LINES)
    lines[line_number - 1] = replacement
    path = write_pairs(tiny_lfw, lines)
    with pytest.raises(EdgeCNNError) as caught:
        read_pairs(path, tiny_lfw / "images")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}:{line_number}: ")
    assert expected in message


@pytest.mark.parametrize(
    "lines, line_number, expected",
    [
        # fold 1 has a third matched pair: line 4 should be its first mismatched pair
        (GOOD_LINES[:3] + ["Ann_Lee\t2\t3"] + GOOD_LINES[3:], 4, "expected mismatched pair 1 of fold 1"),
        # fold 1 has one matched pair only: line 3 should be its second matched pair
        (GOOD_LINES[:2] + GOOD_LINES[3:], 3, "expected matched pair 2 of fold 1"),
        (GOOD_LINES + ["Ann_Lee\t1\t2"], 10, "1 line(s) after the last fold"),
        (GOOD_LINES[:-1], 8, "ends after 7 pair line(s)"),
        (["2 two"] + GOOD_LINES[1:], 1, "not two whole numbers"),
        (["0 2"] + GOOD_LINES[1:], 1, "positive counts"),
        ([], 1, "empty"),
    ],
)
def test_wrong_counts_name_file_and_line(tiny_lfw, lines, line_number, expected):
    path = write_pairs(tiny_lfw, lines)
    with pytest.raises(EdgeCNNError) as caught:
        read_pairs(path, tiny_lfw / "images")
    assert str(caught.value).startswith(f"{path}:{line_number}: ")
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_missing_files_are_one_line_errors(tiny_lfw):
    with pytest.raises(EdgeCNNError, match="does not exist"):
        read_pairs(tiny_lfw / "absent.txt", tiny_lfw / "images")
    with pytest.raises(EdgeCNNError, match="does not exist"):
        read_pairs(write_pairs(tiny_lfw, GOOD_LINES), tiny_lfw / "no_images")
    (tiny_lfw / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(EdgeCNNError, match="cannot be read as text"):
        read_pairs(tiny_lfw / "binary.txt", tiny_lfw / "images")


def test_parse_folds():
    assert parse_folds("6-10") == [6, 7, 8, 9, 10]
    assert parse_folds("1,3,5") == [1, 3, 5]
    assert parse_folds(" 1-2, 7 ,2") == [1, 2, 7]
    for bad in ("", "0-3", "5-3", "3-11", "a", "1-2-3", "6-"):
        with pytest.raises(EdgeCNNError, match="--test-folds"):
            parse_folds(bad)


def test_exclude_people_drops_every_image_and_renumbers():
    classes = ["Ann_Lee", "Bob_Ray", "Cy_Young", "Dee_Dee"]
    items = [(f"{name}/{name}_{i:04d}.jpg", label) for label, name in enumerate(classes) for i in (1, 2)]
    kept_classes, kept_items = exclude_people(items, classes, {"Bob_Ray", "Dee_Dee", "Not_In_Training"})
    assert kept_classes == ["Ann_Lee", "Cy_Young"]
    assert kept_items == [("Ann_Lee/Ann_Lee_0001.jpg", 0), ("Ann_Lee/Ann_Lee_0002.jpg", 0),
                          ("Cy_Young/Cy_Young_0001.jpg", 1), ("Cy_Young/Cy_Young_0002.jpg", 1)]
    with pytest.raises(EdgeCNNError, match="leaves none"):
        exclude_people(items, classes, classes)


@pytest.fixture(scope="module")
def lfw(shared_data) -> Path:
    root = shared_data / "lfw"
    if not (root / "pairs.txt").is_file() or not (root / "images").is_dir():
        pytest.skip(f"{root} (pairs.txt, images/) is absent")
    return root


@pytest.mark.shared_data
def test_real_lfw_pairs_and_test_fold_exclusion(lfw):
    pairs = read_pairs(lfw / "pairs.txt", lfw / "images")
    assert (len(pairs), pairs.folds, pairs.per_fold) == (6000, 10, 300)
    for fold in range(1, 11):
        in_fold = pairs.in_folds([fold])
        assert sum(p.same for p in in_fold) == 300 and sum(not p.same for p in in_fold) == 300
    assert all(os.path.isfile(p.path_a) and os.path.isfile(p.path_b) for p in pairs)

    classes = sorted(entry.name for entry in os.scandir(lfw / "images") if entry.is_dir())
    items = [(str(lfw / "images" / name / file), label)
             for label, name in enumerate(classes) for file in sorted(os.listdir(lfw / "images" / name))]
    test_people = fold_people(pairs, parse_folds("6-10"))
    kept_classes, kept_items = exclude_people(items, classes, test_people)
    assert test_people <= set(classes)
    assert len(kept_classes) == len(classes) - len(test_people)
    assert not {Path(path).parent.name for path, _ in kept_items} & test_people
    assert {Path(path).parent.name for path, _ in kept_items} == set(kept_classes)
    assert test_people.isdisjoint(fold_people(pairs, range(1, 6)))  # SOURCE.txt: folds are disjoint in people
