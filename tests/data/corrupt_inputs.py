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


def _random(n, seed):
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


# Issue 20: every way a frame file can be undecodable. Each maps the real file's bytes
# to the corrupt ones (the truncated variant cuts the real JPEG; the PNG one re-encodes
# the real image, a valid picture with the wrong format).
JPEG_VARIANTS = {
    # Random bytes not starting with 0xff 0xd8 (libjpeg: "Not a JPEG file: starts with ...").
    "random": lambda data: b"\xf4\xc1" + _random(98, 1),
    # A JPEG start-of-image and APP0 marker, then random bytes.
    "random_with_header": lambda data: b"\xff\xd8\xff\xe0" + _random(96, 2),
    # The first 60% of the real JPEG: the top rows decode, the rest is missing.
    "truncated": lambda data: data[: len(data) * 6 // 10],
    "empty": lambda data: b"",
    "png_renamed": lambda data: _png_of(data),
}


def _png_of(data):
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return cv2.imencode(".png", image)[1].tobytes()


def corrupt_frame(path, variant):
    """Overwrites the frame file `path` with its `JPEG_VARIANTS[variant]` corruption."""
    path = Path(path)
    path.write_bytes(JPEG_VARIANTS[variant](path.read_bytes()))
    return path


def add_stored_means(directory, rgb_frames=6):
    """Turns a copy of the MMAction2 folder into a `keras-twostream extract`-style folder.

    Keeps RGB frames 1..`rgb_frames` (one more than its 5 flow pairs) and writes
    `meta.json` and `flow_means.npy` (the field means as OpenCV decodes them), so the
    pipeline decodes only crop windows of flow (the stored-means path).
    """
    import cv2
    import numpy as np

    from keras_twostream.data import frames

    directory = Path(directory)
    for path in directory.glob("img_*.jpg"):
        if int(path.stem[4:]) > rgb_frames:
            path.unlink()
    flow = rgb_frames - 1
    bound = frames.DEFAULT_BOUND
    means = []
    for i in range(1, flow + 1):
        pair = []
        for p in frames.flow_frame_paths(directory, i):
            q = cv2.imread(p, cv2.IMREAD_GRAYSCALE).astype(np.float64)
            pair.append((q * 2 * bound / 255 - bound).mean())
        means.append(pair)
    image = cv2.imread(str(directory / "img_00001.jpg"))
    frames.write_meta(
        directory,
        {
            "algorithm": "tvl1", "bound": bound, "short_side": None,
            "width": image.shape[1], "height": image.shape[0], "rgb_frames": rgb_frames,
            "flow_frames": flow, "fps": None, "source": None, "keras_twostream_version": None,
        },
    )  # fmt: skip
    frames.write_flow_means(directory, np.array(means))
    return directory
