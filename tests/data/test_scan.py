"""scan_dataset and `keras-twostream scan`: every broken input is reported, good ones are not."""

import argparse
import json

import pandas as pd
import pytest
from corrupt_inputs import MMACTION2, TEST_MP4, copy_frame_folder, copy_video, make_corrupt_videos

from keras_twostream.data.frames import check_frame_folder, read_meta
from keras_twostream.data.scan import add_arguments, run, scan_dataset


def _problems(result):
    return sorted(map(tuple, result[["path", "problem"]].itertuples(index=False)))


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    make_corrupt_videos(folder / "broken")
    copy_video(folder, "good/a.avi")
    copy_video(folder, "good/b.mp4", TEST_MP4)
    return folder


def test_every_broken_video_is_reported(video_dir):
    result = scan_dataset(video_dir, progress=False)
    assert list(result.columns) == ["path", "problem"]
    assert result.attrs["checked"] == 6
    problems = dict(_problems(result))
    assert sorted(problems) == [
        "broken/empty.avi",
        "broken/text.avi",
        "broken/truncated.avi",
        "broken/truncated_h264.mp4",
    ]
    assert problems["broken/empty.avi"] == "the file is empty (0 bytes)"
    assert "stopped after 77 of the 164" in problems["broken/truncated.avi"]
    assert "cannot open it" in problems["broken/text.avi"]
    assert "moov" in problems["broken/truncated_h264.mp4"]


def test_parallel_scan_finds_the_same(video_dir):
    serial = scan_dataset(video_dir, progress=False)
    parallel = scan_dataset(video_dir, progress=False, workers=2)
    assert _problems(parallel) == _problems(serial)


def test_short_videos_and_labels_from_a_table(video_dir):
    table = pd.DataFrame(
        {
            "path": ["good/a.avi", "good/b.mp4", "good/missing.avi"],
            "frames": [200, 300, -1],
            "label": [0, 7, (1, 9)],
            "offset": [0, 0, 0],
        }
    )
    result = scan_dataset(table, root=video_dir, progress=False, num_classes=5, min_frames=250)
    a, b, missing = (str(video_dir / p) for p in table["path"])
    assert _problems(result) == sorted(
        [
            (a, "164 frames decoded, the annotation needs frames 1..200"),
            (a, "164 frames decoded, fewer than the 250 needed (min_frames)"),
            (b, "label 7 outside the class list (expected 0..4, or -1 for unknown)"),
            (missing, "label 9 outside the class list (expected 0..4, or -1 for unknown)"),
            (missing, "not found (neither a video file nor a frame folder)"),
        ]
    )


def test_real_mmaction2_annotations():
    annotations = MMACTION2 / "annotations"
    assert scan_dataset(
        annotations / "rawframe_test_list.txt", root=MMACTION2, progress=False
    ).empty
    assert scan_dataset(annotations / "video_test_list.txt", root=MMACTION2, progress=False).empty
    # The offset list asks for frames 3..7: there are 10 RGB frames but only 5 flow pairs.
    offset_list = annotations / "rawframe_test_list_with_offset.txt"
    result = scan_dataset(offset_list, root=MMACTION2, progress=False)
    imgs = str(MMACTION2 / "imgs")
    assert _problems(result) == [(imgs, "the annotation needs flow pairs 3..6, the folder has 5")]
    assert result.attrs["checked"] == 1  # the two identical lines are checked once
    assert scan_dataset(offset_list, root=MMACTION2, modality="rgb", progress=False).empty
    labels = scan_dataset(
        annotations / "rawframe_test_list.txt", root=MMACTION2, num_classes=101, progress=False
    )
    assert len(labels) == 2 and "label 127 outside" in labels["problem"].iloc[0]


def test_damaged_frame_folders(tmp_path):
    root = tmp_path / "frames"
    good = copy_frame_folder(root / "good")
    assert check_frame_folder(good) == []
    gap = copy_frame_folder(root / "gap")
    (gap / "img_00004.jpg").unlink()
    unpaired = copy_frame_folder(root / "unpaired")
    (unpaired / "y_00002.jpg").unlink()
    empty = copy_frame_folder(root / "empty")
    (empty / "img_00010.jpg").write_bytes(b"")
    garbage = copy_frame_folder(root / "garbage")
    (garbage / "x_00005.jpg").write_text("not a jpeg")
    result = scan_dataset(root, progress=False)
    assert _problems(result) == [
        ("empty", "empty (0-byte) frame files: img_00010.jpg"),
        ("gap", "missing RGB frames: img_00004.jpg (the last one is 10)"),
        ("garbage", "x_00005.jpg does not decode as an image"),
        ("unpaired", "missing flow-y frames: y_00002.jpg (the last one is 5)"),
        ("unpaired", "x_ files without their y_ file at indices 2"),
    ]
    # Flow problems do not matter when only RGB is read.
    assert sorted(scan_dataset(root, modality=("rgb",), progress=False)["path"]) == ["empty", "gap"]


def test_meta_json_counts(tmp_path):
    folder = copy_frame_folder(tmp_path / "clip")
    meta = {
        "algorithm": "tvl1",
        "bound": 20.0,
        "short_side": 256,
        "width": 340,
        "height": 256,
        "rgb_frames": 10,
        "flow_frames": 9,
        "fps": 30.0,
        "source": "clip.mp4",
        "keras_twostream_version": "0.1.0",
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    assert read_meta(folder)["has_meta"]
    assert check_frame_folder(folder, "rgb") == []
    assert check_frame_folder(folder, "flow") == ["meta.json says 9 flow pairs, the folder has 5"]
    (folder / "meta.json").write_text(json.dumps({**meta, "flow_frames": 5}))
    assert check_frame_folder(folder, "flow") == [
        "RGB/flow counts disagree in meta.json: 10 RGB frames need 9 flow pairs, it says 5"
    ]
    (folder / "meta.json").write_text(json.dumps({**meta, "rgb_frames": None}))
    problems = check_frame_folder(folder)
    assert len(problems) == 1 and "'rgb_frames' must be an integer" in problems[0]
    assert "meta.json" in problems[0]
    (folder / "meta.json").write_text("{")
    assert "not valid JSON" in check_frame_folder(folder)[0]


def test_leftover_temporary_folder_and_empty_dir(tmp_path):
    copy_frame_folder(tmp_path / "out" / ".clip.tmp-12345")
    result = scan_dataset(tmp_path / "out", progress=False)
    assert list(result["path"]) == [".clip.tmp-12345"]
    assert "interrupted extraction" in result["problem"].iloc[0]
    (tmp_path / "nothing").mkdir()
    assert list(scan_dataset(tmp_path / "nothing", progress=False)["problem"]) == [
        "no videos or frame folders found"
    ]


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        scan_dataset(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="modality"):
        scan_dataset(tmp_path, modality=("depth",))
    with pytest.raises(ValueError, match="path"):
        scan_dataset(pd.DataFrame({"video": ["a"]}))


def test_command_line(video_dir, tmp_path, capsys):
    parser = add_arguments(argparse.ArgumentParser())
    output = tmp_path / "problems.csv"
    args = parser.parse_args([str(video_dir), "--workers", "1", "--output", str(output)])
    assert run(args) == 1
    printed = capsys.readouterr().out
    assert "broken/empty.avi: the file is empty (0 bytes)" in printed
    assert "4 problem(s) in 6 checked entries" in printed
    assert len(pd.read_csv(output)) == 4
    clean = parser.parse_args(
        [str(MMACTION2 / "annotations" / "video_test_list.txt"), "--root", str(MMACTION2)]
    )
    assert run(clean) == 0


def test_ucf101_split_folder_against_frame_folders(tmp_path):
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 Walk\n2 Jump\n")
    (lists / "trainlist01.txt").write_text("Walk/v_Walk_g01_c01.avi 1\nJump/v_Jump_g01_c01.avi 2\n")
    (lists / "testlist01.txt").write_text("Jump/v_Jump_g02_c01.avi\n")
    frames = tmp_path / "frames"
    copy_frame_folder(frames / "Walk" / "v_Walk_g01_c01")
    copy_frame_folder(frames / "Jump" / "v_Jump_g02_c01")
    result = scan_dataset(lists, root=frames, modality="rgb", progress=False)
    assert _problems(result) == [
        (
            str(frames / "Jump" / "v_Jump_g01_c01"),
            "not found (neither a video file nor a frame folder)",
        )
    ]
    (lists / "testlist01.txt").write_text("Run/v_Run_g02_c01.avi\n")
    with pytest.raises(ValueError, match=r"testlist01.txt, line 1: the class folder 'Run'"):
        scan_dataset(lists, root=frames, progress=False)


def test_commands_check_missing_uses_the_validators_presence_check(tmp_path, capsys):
    """`check_missing` (train/evaluate) and `inspect_frame_folder` agree on what is missing."""
    from keras_twostream.commands.common import UserError, check_missing
    from keras_twostream.data.frames import (
        FOLDER_NOT_FOUND,
        NOT_A_FOLDER,
        folder_presence_problem,
        inspect_frame_folder,
    )

    (tmp_path / "Run" / "v1").mkdir(parents=True)
    (tmp_path / "Run" / "v2.avi").write_bytes(b"RIFF")  # a video file: read directly
    paths = [tmp_path / "Run" / "v1", tmp_path / "Run" / "v2.avi", tmp_path / "Jump" / "v3"]
    table = pd.DataFrame({"path": [str(p) for p in paths], "label": [0, 0, 1]})

    assert [folder_presence_problem(p, video_files=True) is None for p in paths] == [1, 1, 0]
    assert folder_presence_problem(paths[1]).problem == NOT_A_FOLDER
    assert inspect_frame_folder(paths[1]).problems[0].problem == NOT_A_FOLDER
    missing = folder_presence_problem(paths[2])
    assert (missing.problem, missing.missing) == (FOLDER_NOT_FOUND, True)
    assert inspect_frame_folder(paths[2]).problems[0].problem == FOLDER_NOT_FOUND

    with pytest.raises(UserError, match=r"1 of the 3 videos named in split1.txt .*Jump/v3.*--skip"):
        check_missing(table, tmp_path, "split1.txt", "train")
    kept = check_missing(table, tmp_path, "split1.txt", "train", skip=True)
    assert list(kept["path"]) == [str(p) for p in paths[:2]]
    assert "Jump/v3; left out (--skip-missing)" in capsys.readouterr().out
    with pytest.raises(UserError, match="none of the videos"):
        check_missing(table.iloc[2:], tmp_path, "split1.txt", "train", skip=True)
