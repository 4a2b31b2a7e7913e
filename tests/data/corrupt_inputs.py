"""Makers of corrupt inputs for the data tests: broken videos and damaged frame folders.

Import from a test module in tests/data (pytest puts this folder on sys.path):
`from corrupt_inputs import make_corrupt_videos, copy_frame_folder`.
"""

import shutil
from pathlib import Path

MMACTION2 = Path(__file__).resolve().parent / "mmaction2"
TEST_AVI = MMACTION2 / "test.avi"  # MPEG-4 Part 2, 320x240, 164 frames, 25 fps
TEST_MP4 = MMACTION2 / "test.mp4"  # H.264, 340x256, 300 frames, 30 fps
IMGS = MMACTION2 / "imgs"  # 10 RGB frames, 5 flow pairs, no meta.json


def make_corrupt_videos(directory):
    """Writes one video of each kind of damage into `directory`.

    Returns:
        A dict `kind -> Path`:
        - `"truncated_avi"`: the first half of test.avi (opens; decoding stops at frame 77
          of the 164 its header announces);
        - `"truncated_mp4"`: the first 90% of test.mp4 (its 'moov' index is at the end, so
          it does not open);
        - `"empty"`: a zero-byte `.avi`;
        - `"text"`: a text file renamed `.avi`.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    avi = TEST_AVI.read_bytes()
    mp4 = TEST_MP4.read_bytes()
    paths = {
        "truncated_avi": directory / "truncated.avi",
        "truncated_mp4": directory / "truncated_h264.mp4",
        "empty": directory / "empty.avi",
        "text": directory / "text.avi",
    }
    paths["truncated_avi"].write_bytes(avi[: len(avi) // 2])
    paths["truncated_mp4"].write_bytes(mp4[: len(mp4) * 9 // 10])
    paths["empty"].write_bytes(b"")
    paths["text"].write_text("This is not a video.\n")
    return paths


def copy_video(directory, name="good.avi", source=TEST_AVI):
    """Copies a real test video to `directory/name` and returns the new path."""
    target = Path(directory) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def copy_frame_folder(directory):
    """Copies the real MMAction2 frame folder (10 RGB, 5 flow pairs) to `directory`."""
    directory = Path(directory)
    shutil.copytree(IMGS, directory)
    for path in directory.iterdir():
        path.chmod(0o644)
    return directory
