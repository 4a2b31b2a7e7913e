"""Annotation readers: the real MMAction2 lists, synthetic UCF101/HMDB51 splits, CSV, errors."""

import os

import pandas as pd
import pytest
from corrupt_inputs import MMACTION2

from keras_twostream.data.annotations import COLUMNS, detect_format, load_annotations

ANNOTATIONS = MMACTION2 / "annotations"


def _rows(table):
    return [tuple(r) for r in table[list(COLUMNS)].itertuples(index=False)]


def _check_columns(table, multi_label=False):
    assert list(table.columns[:5]) == list(COLUMNS)
    assert table["frames"].dtype == "int64" and table["offset"].dtype == "int64"
    if not multi_label:
        assert table["label"].dtype == "int64"


# --- The real MMAction2 files (tests/data/mmaction2/annotations) -------------------


def test_real_rawframe_list():
    table = load_annotations(ANNOTATIONS / "rawframe_test_list.txt")
    _check_columns(table)
    assert table.attrs["format"] == "rawframes"
    assert _rows(table) == [("imgs", 5, 127, "", 0)] * 2


def test_real_rawframe_list_with_offset_is_detected():
    table = load_annotations(ANNOTATIONS / "rawframe_test_list_with_offset.txt")
    assert _rows(table) == [("imgs", 5, 127, "", 2)] * 2
    with pytest.raises(
        ValueError, match=r"rawframe_test_list_with_offset.txt, line 1: .*3 numbers"
    ):
        load_annotations(ANNOTATIONS / "rawframe_test_list_with_offset.txt", with_offset=False)


def test_real_rawframe_multi_label_list():
    path = ANNOTATIONS / "rawframe_test_list_multi_label.txt"
    table = load_annotations(path, multi_label=True)
    _check_columns(table, multi_label=True)
    assert _rows(table) == [("imgs", 5, (1,), "", 0), ("imgs", 5, (3, 5), "", 0)]
    with pytest.raises(ValueError, match=r"multi_label.txt, line 2: .*multi_label=True"):
        load_annotations(path)


def test_real_video_lists():
    root = MMACTION2
    table = load_annotations(ANNOTATIONS / "video_test_list.txt", root=root)
    assert table.attrs["format"] == "videos" and table.attrs["root"] == str(root)
    assert _rows(table) == [(str(root / "test.mp4"), -1, 0, "", 0)] * 2
    multi = load_annotations(ANNOTATIONS / "video_test_list_multi_label.txt", multi_label=True)
    assert list(multi["label"]) == [(0, 3), (0, 2, 4)]
    with pytest.raises(ValueError, match=r"video_test_list_multi_label.txt, line 1"):
        load_annotations(ANNOTATIONS / "video_test_list_multi_label.txt")


def test_label_outside_the_class_list_names_file_and_line():
    with pytest.raises(ValueError, match=r"rawframe_test_list.txt, line 1: label 127 is outside"):
        load_annotations(ANNOTATIONS / "rawframe_test_list.txt", num_classes=101)
    assert len(load_annotations(ANNOTATIONS / "rawframe_test_list.txt", num_classes=128)) == 2


def test_detect_format():
    assert detect_format(ANNOTATIONS / "rawframe_test_list.txt") == "rawframes"
    assert detect_format(ANNOTATIONS / "video_test_list.txt") == "videos"
    with pytest.raises(ValueError, match="classInd.txt"):
        detect_format(ANNOTATIONS)
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        load_annotations(ANNOTATIONS / "nowhere.txt")
    with pytest.raises(ValueError, match="format"):
        load_annotations(ANNOTATIONS / "rawframe_test_list.txt", format="kinetics")


# --- Synthetic UCF101 split files -----------------------------------------------------


@pytest.fixture
def ucf101(tmp_path):
    folder = tmp_path / "ucfTrainTestlist"
    folder.mkdir()
    # UCF101's files use Windows line endings.
    (folder / "classInd.txt").write_bytes(
        b"1 ApplyEyeMakeup\r\n2 Basketball\r\n3 HandstandPushups\r\n"
    )
    (folder / "trainlist01.txt").write_bytes(
        b"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"
        b"HandstandPushups/v_HandStandPushups_g08_c01.avi 3\r\n"
        b"Basketball/v_Basketball_g08_c01.avi 2\r\n"
    )
    (folder / "testlist01.txt").write_bytes(
        b"ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\nHandstandPushups/v_HandStandPushups_g01_c01.avi\r\n"
    )
    return folder


def test_ucf101_split(ucf101):
    table = load_annotations(ucf101)
    _check_columns(table)
    assert table.attrs["format"] == "ucf101"
    assert table.attrs["classes"] == ["ApplyEyeMakeup", "Basketball", "HandstandPushups"]
    assert _rows(table) == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", -1, 0, "train", 0),
        ("HandstandPushups/v_HandStandPushups_g08_c01.avi", -1, 2, "train", 0),
        ("Basketball/v_Basketball_g08_c01.avi", -1, 1, "train", 0),
        # Test lists carry no label: it comes from the class folder through classInd.txt.
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", -1, 0, "test", 0),
        ("HandstandPushups/v_HandStandPushups_g01_c01.avi", -1, 2, "test", 0),
    ]
    test_only = load_annotations(ucf101 / "testlist01.txt")
    assert list(test_only["split"]) == ["test", "test"] and list(test_only["label"]) == [0, 2]
    with pytest.raises(FileNotFoundError, match="trainlist02.txt"):
        load_annotations(ucf101, split=2)


def test_ucf101_frame_layout_with_root(ucf101, tmp_path):
    frames = tmp_path / "frames"
    (frames / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01").mkdir(parents=True)
    table = load_annotations(ucf101, root=frames)
    assert table["path"].iloc[0] == str(frames / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01")
    videos = load_annotations(ucf101, root=frames, layout="videos")
    assert videos["path"].iloc[0].endswith(".avi")
    assert load_annotations(ucf101)["path"].iloc[0] == "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"


@pytest.mark.parametrize(
    "file, line, message",
    [
        (
            "trainlist01.txt",
            b"ApplyEyeMakeup/v_ApplyEyeMakeup_g09_c01.avi 4",
            r"trainlist01.txt, line 4: label 4 is outside",
        ),
        (
            "trainlist01.txt",
            b"ApplyEyeMakeup/v_ApplyEyeMakeup_g09_c01.avi 2",
            r"trainlist01.txt, line 4: label 2 is class 'Basketball'",
        ),
        (
            "trainlist01.txt",
            b"ApplyEyeMakeup/v_ApplyEyeMakeup_g09_c01.avi",
            r"trainlist01.txt, line 4: expected",
        ),
        (
            "testlist01.txt",
            b"Surfing/v_Surfing_g01_c01.avi",
            r"testlist01.txt, line 3: the class folder 'Surfing'",
        ),
    ],
)
def test_ucf101_errors_name_file_and_line(ucf101, file, line, message):
    with open(ucf101 / file, "ab") as f:
        f.write(line + b"\r\n")
    with pytest.raises(ValueError, match=message):
        load_annotations(ucf101)


# --- Synthetic HMDB51 split files -----------------------------------------------------


@pytest.fixture
def hmdb51(tmp_path):
    folder = tmp_path / "testTrainMulti_7030_splits"
    folder.mkdir()
    (folder / "wave_test_split1.txt").write_text("w_a.avi 1 \nw_b.avi 2 \nw_c.avi 0 \n")
    (folder / "brush_hair_test_split1.txt").write_text("b_a.avi 2 \nb_b.avi 1 \n")
    (folder / "brush_hair_test_split2.txt").write_text("b_a.avi 1 \nb_b.avi 2 \n")
    (folder / "wave_test_split2.txt").write_text("w_a.avi 0 \nw_b.avi 1 \nw_c.avi 2 \n")
    return folder


def test_hmdb51_split(hmdb51):
    assert detect_format(hmdb51) == "hmdb51"
    table = load_annotations(hmdb51, split=1)
    _check_columns(table)
    assert table.attrs["classes"] == ["brush_hair", "wave"]  # sorted class names
    assert _rows(table) == [
        ("brush_hair/b_a.avi", -1, 0, "test", 0),
        ("brush_hair/b_b.avi", -1, 0, "train", 0),
        ("wave/w_a.avi", -1, 1, "train", 0),
        ("wave/w_b.avi", -1, 1, "test", 0),  # w_c.avi is tagged 0: unused in split 1
    ]
    split2 = load_annotations(hmdb51, split=2)
    assert list(split2["path"]) == [
        "brush_hair/b_a.avi",
        "brush_hair/b_b.avi",
        "wave/w_b.avi",
        "wave/w_c.avi",
    ]
    assert list(split2["split"]) == ["train", "test", "train", "test"]
    with pytest.raises(FileNotFoundError, match="split3"):
        load_annotations(hmdb51, split=3)


def test_hmdb51_bad_tag_names_file_and_line(hmdb51):
    with open(hmdb51 / "wave_test_split1.txt", "a") as f:
        f.write("w_d.avi 3\n")
    with pytest.raises(
        ValueError, match=r"wave_test_split1.txt, line 4: expected '<video>.avi <0\|1\|2>'"
    ):
        load_annotations(hmdb51)


# --- Synthetic rawframe/video lists and CSV -------------------------------------------


def test_paths_with_spaces_and_blank_lines(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("air drumming/clip_1 10 3\n\nabseiling/clip_2 12 0\n")
    table = load_annotations(path)
    assert _rows(table) == [
        ("air drumming/clip_1", 10, 3, "", 0),
        ("abseiling/clip_2", 12, 0, "", 0),
    ]


def test_malformed_rawframe_lines(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("a 10 1\nb ten 1\n")
    with pytest.raises(ValueError, match=r"list.txt, line 2: expected 'frame_dir"):
        load_annotations(path)
    path.write_text("a 10 1\nb 0 1\n")
    with pytest.raises(ValueError, match=r"list.txt, line 2: expected total_frames >= 1"):
        load_annotations(path)
    path.write_text("a 10 -2\n")
    with pytest.raises(ValueError, match=r"list.txt, line 1: label -2 is outside"):
        load_annotations(path)
    path.write_text("a 10 3 1\n")  # with multi_label the offset must be asked for
    assert _rows(load_annotations(path, multi_label=True, with_offset=True)) == [
        ("a", 3, (1,), "", 10)
    ]


def test_csv(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("path,label,split,frames,note\nx/a.avi,3,train,,hello\nx/b,0,val,20,\n")
    table = load_annotations(path, root=tmp_path)
    _check_columns(table)
    assert _rows(table) == [
        (os.path.join(tmp_path, "x/a.avi"), -1, 3, "train", 0),
        (os.path.join(tmp_path, "x/b"), 20, 0, "val", 0),
    ]
    assert list(table["note"]) == ["hello", ""]
    path.write_text('path,label\na,"(3, 5)"\nb,7;1\nc,2\n')
    assert list(load_annotations(path, multi_label=True)["label"]) == [(3, 5), (7, 1), (2,)]
    path.write_text("path,label\na,1\nb,one\n")
    with pytest.raises(ValueError, match=r"table.csv, line 3: column 'label' must hold an integer"):
        load_annotations(path)
    path.write_text("path,label\na,1\nb,9\n")
    with pytest.raises(ValueError, match=r"table.csv, line 3: label 9 is outside"):
        load_annotations(path, num_classes=5)
    path.write_text("video,label\na,1\n")
    with pytest.raises(ValueError, match=r"table.csv: missing columns \['path'\]"):
        load_annotations(path)


def test_table_round_trips_through_csv(tmp_path):
    table = load_annotations(ANNOTATIONS / "rawframe_test_list_with_offset.txt")
    table.to_csv(tmp_path / "t.csv", index=False)
    again = load_annotations(tmp_path / "t.csv")
    pd.testing.assert_frame_equal(again[list(COLUMNS)], table[list(COLUMNS)], check_dtype=False)
