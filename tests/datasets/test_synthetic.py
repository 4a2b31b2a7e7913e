"""The synthetic appearance x motion dataset: files, split files, determinism, class design."""

import json
import re
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from keras_twostream.datasets import (
    SYNTHETIC_APPEARANCES,
    SYNTHETIC_CLASSES,
    SYNTHETIC_MOTIONS,
    extract_synthetic_frames,
    generate_synthetic_dataset,
    render_synthetic_video,
    synthetic_dataset_path,
)
from keras_twostream.datasets.synthetic import _scene

SMALL = dict(videos_per_class=(3, 2), size=32, num_frames=12, clips_per_group=2, progress=False)
UCF_NAME = re.compile(r"^(?P<cls>[A-Za-z_]+)/v_(?P=cls)_g(?P<g>\d{2})_c(?P<c>\d{2})\.avi$")


def decode(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame[..., ::-1])  # BGR -> RGB
    capture.release()
    return np.stack(frames) if frames else np.zeros((0,))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return generate_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "data", **SMALL)


def read_lists(root):
    class_ind = [line.split(" ") for line in (root / "classInd.txt").read_text().splitlines()]
    train = [line.split(" ") for line in (root / "trainlist01.txt").read_text().splitlines()]
    test = (root / "testlist01.txt").read_text().splitlines()
    return class_ind, train, test


# ---------------------------------------------------------------------------------------------
# Files and split files.


def test_class_names_are_appearance_times_motion():
    assert len(SYNTHETIC_CLASSES) == len(SYNTHETIC_APPEARANCES) * len(SYNTHETIC_MOTIONS) == 9
    assert len(set(SYNTHETIC_CLASSES)) == 9
    for name in SYNTHETIC_CLASSES:
        appearance, motion = name.split("_")
        assert appearance in SYNTHETIC_APPEARANCES and motion in SYNTHETIC_MOTIONS


def test_extract_synthetic_frames_maps_split_1_to_complete_frame_folders(small, tmp_path):
    data = extract_synthetic_frames(small, tmp_path / "frames", short_side=32, progress=False)
    assert data.failed == []
    assert data.classes == list(SYNTHETIC_CLASSES)
    assert (len(data.train), len(data.test)) == (3 * 9, 2 * 9)
    assert set(data.train.path).isdisjoint(data.test.path)
    for row in data.test.itertuples():
        folder = data.frames / row.path  # the video's path without its extension
        meta = json.loads((folder / "meta.json").read_text())
        assert (meta["rgb_frames"], meta["flow_frames"]) == (12, 11)
        assert row.label == data.classes.index(row.path.split("/")[0])
    # Extraction resumes: complete folders are kept, not rewritten.
    stamp = (data.frames / data.train.path.iloc[0] / "meta.json").stat().st_mtime_ns
    extract_synthetic_frames(small, tmp_path / "frames", short_side=32, progress=False)
    assert (data.frames / data.train.path.iloc[0] / "meta.json").stat().st_mtime_ns == stamp


def test_extract_synthetic_frames_names_a_folder_that_is_not_a_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="classInd.txt.*not_a_dataset"):
        extract_synthetic_frames(tmp_path / "not_a_dataset")


def test_split_files_follow_ucf101(small):
    class_ind, train, test = read_lists(small)
    assert class_ind == [[str(i), name] for i, name in enumerate(SYNTHETIC_CLASSES, start=1)]
    labels = {name: int(i) for i, name in class_ind}
    train_groups, test_groups = set(), set()
    per_class = {name: [0, 0] for name in SYNTHETIC_CLASSES}
    for path, label in train:
        match = UCF_NAME.match(path)
        assert match, path
        assert int(label) == labels[match["cls"]]
        train_groups.add(int(match["g"]))
        per_class[match["cls"]][0] += 1
    for path in test:
        match = UCF_NAME.match(path)
        assert match and " " not in path, path
        test_groups.add(int(match["g"]))
        per_class[match["cls"]][1] += 1
    assert all(counts == [3, 2] for counts in per_class.values())
    # UCF101 splits by group: test groups first, disjoint from the training groups.
    assert test_groups == {1} and train_groups == {2, 3}
    # Every video on disk is in exactly one list, and every listed video exists.
    on_disk = {
        p.relative_to(small / "videos").as_posix() for p in (small / "videos").rglob("*.avi")
    }
    listed = [p for p, _ in train] + test
    assert sorted(listed) == sorted(on_disk)


def test_videos_decode_to_the_rendered_frames(small):
    _, train, test = read_lists(small)
    for path in [p for p, _ in train[::5]] + test[::5]:
        match = UCF_NAME.match(path)
        frames = decode(small / "videos" / path)
        assert frames.shape == (12, 32, 32, 3), path
        expected = render_synthetic_video(
            match["cls"], int(match["g"]), int(match["c"]), size=32, num_frames=12
        )
        # Motion-JPEG is lossy (chroma subsampling blurs colour edges): close on average.
        assert np.abs(frames.astype(float) - expected).mean() < 8.0, path
    # Colours are stored as RGB (not swapped): the red object is red in the decoded file.
    frames = decode(small / "videos" / "RedStripes_Rotating/v_RedStripes_Rotating_g01_c01.avi")
    _, mask = render_synthetic_video(
        "RedStripes_Rotating", 1, 1, size=32, num_frames=12, return_mask=True
    )
    inside = frames[mask > 0.99].astype(float)
    assert inside[:, 0].mean() > inside[:, 2].mean() + 40


def test_mp4_writes_and_decodes(tmp_path):
    root = generate_synthetic_dataset(
        tmp_path, videos_per_class=(1, 1), size=32, num_frames=8, ext=".mp4", progress=False
    )
    files = sorted((root / "videos").rglob("*.mp4"))
    assert len(files) == 18
    assert (root / "testlist01.txt").read_text().splitlines()[0].endswith("_g01_c01.mp4")
    frames = decode(
        root / "videos" / "GreenDots_Oscillating" / "v_GreenDots_Oscillating_g02_c01.mp4"
    )
    expected = render_synthetic_video("GreenDots_Oscillating", 2, 1, size=32, num_frames=8)
    assert frames.shape == (8, 32, 32, 3)
    assert np.abs(frames.astype(float) - expected).mean() < 8.0


# ---------------------------------------------------------------------------------------------
# Determinism, reuse, regeneration.


def test_same_seed_same_frames_other_seed_other_frames(tmp_path, small):
    again = generate_synthetic_dataset(tmp_path / "again", **SMALL)
    other = generate_synthetic_dataset(tmp_path / "other", **{**SMALL, "seed": 1})
    for path in [
        "BlueChecker_Oscillating/v_BlueChecker_Oscillating_g02_c01.avi",
        "GreenDots_Translating/v_GreenDots_Translating_g01_c02.avi",
    ]:
        reference = decode(small / "videos" / path)
        np.testing.assert_array_equal(decode(again / "videos" / path), reference)
        assert np.abs(decode(other / "videos" / path).astype(float) - reference).mean() > 10


def test_complete_folder_is_reused(small):
    video = small / "videos" / SYNTHETIC_CLASSES[0] / f"v_{SYNTHETIC_CLASSES[0]}_g01_c01.avi"
    before = (video.stat().st_mtime_ns, (small / "manifest.json").stat().st_mtime_ns)
    assert generate_synthetic_dataset(small, **SMALL) == small
    assert (video.stat().st_mtime_ns, (small / "manifest.json").stat().st_mtime_ns) == before


def test_interrupted_generation_is_regenerated(tmp_path):
    params = dict(SMALL, videos_per_class=(1, 1))
    root = generate_synthetic_dataset(tmp_path, **params)
    video = root / "videos" / "GreenDots_Rotating" / "v_GreenDots_Rotating_g02_c01.avi"
    reference = decode(video)
    (root / "notes.txt").write_text("not ours")
    # An interrupted run: the manifest (written last) is missing, a video is cut short and a
    # split file is missing.
    (root / "manifest.json").unlink()
    video.write_bytes(video.read_bytes()[:300])
    (root / "testlist01.txt").unlink()
    assert len(decode(video)) < 12
    generate_synthetic_dataset(root, **params)
    np.testing.assert_array_equal(decode(video), reference)
    assert (root / "testlist01.txt").is_file()
    assert (root / "notes.txt").read_text() == "not ours"
    # A complete manifest whose files no longer match is not trusted either.
    video.write_bytes(b"")
    generate_synthetic_dataset(root, **params)
    np.testing.assert_array_equal(decode(video), reference)


def test_killed_generation_leaves_no_manifest(tmp_path):
    # A real interruption: kill a generating process as soon as its first video appears.
    root = tmp_path / "killed"
    params = dict(videos_per_class=(8, 8), size=64, num_frames=24, progress=False)
    code = (
        "import sys; from keras_twostream.datasets import generate_synthetic_dataset as g; "
        f"g(sys.argv[1], **{params!r})"
    )
    process = subprocess.Popen([sys.executable, "-c", code, str(root)])
    try:
        deadline = time.monotonic() + 60
        while not any((root / "videos").rglob("*.avi")) and process.poll() is None:
            assert time.monotonic() < deadline, "the generating process wrote no video"
            time.sleep(0.005)
    finally:
        process.kill()
        process.wait()
    assert process.returncode != 0, "generation finished before it could be interrupted"
    assert not (root / "manifest.json").exists()
    # No manifest: the next call regenerates (see test_interrupted_generation_is_regenerated).


def test_other_arguments_regenerate_and_drop_stale_files(tmp_path):
    root = generate_synthetic_dataset(tmp_path, **dict(SMALL, videos_per_class=(3, 1)))
    stale = root / "videos" / "RedStripes_Rotating" / "v_RedStripes_Rotating_g03_c01.avi"
    assert stale.is_file()
    generate_synthetic_dataset(root, **dict(SMALL, videos_per_class=(1, 1), size=48))
    assert not stale.exists()
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["params"]["size"] == 48 and manifest["params"]["videos_per_class"] == [1, 1]
    assert len(manifest["videos"]) == 18
    assert sorted(manifest["files"]) == sorted(
        [p.relative_to(root).as_posix() for p in (root / "videos").rglob("*.avi")]
        + ["classInd.txt", "testlist01.txt", "trainlist01.txt"]
    )
    assert decode(root / "videos" / manifest["videos"][0]["path"]).shape == (12, 48, 48, 3)


# ---------------------------------------------------------------------------------------------
# The class design: appearance is invisible to the silhouette, motion to a single frame.


@pytest.mark.parametrize("group, clip", [(1, 1), (2, 3), (5, 2)])
def test_appearance_changes_only_the_texture_inside_the_same_silhouette(group, clip):
    for motion in SYNTHETIC_MOTIONS:
        rendered = [
            render_synthetic_video(
                f"{a}_{motion}", group, clip, size=48, num_frames=12, return_mask=True
            )
            for a in SYNTHETIC_APPEARANCES
        ]
        (frames0, mask0), others = rendered[0], rendered[1:]
        assert mask0.max() == 1.0 and mask0.sum(axis=(1, 2)).min() > 20
        for frames, mask in others:
            # Exactly the same silhouette in every frame, exactly the same pixels outside it.
            np.testing.assert_array_equal(mask, mask0)
            outside = mask0 == 0
            np.testing.assert_array_equal(frames[outside], frames0[outside])
            inside = mask0 > 0.99
            assert np.abs(frames[inside].astype(float) - frames0[inside]).mean() > 40


def test_motion_is_invisible_in_the_middle_frame_and_visible_over_the_clip():
    # num_frames odd: at the middle frame, the object has the same position and orientation
    # whatever the motion (oscillation adds its random phase offset, which is not class-specific).
    masks = {
        m: render_synthetic_video(
            f"BlueChecker_{m}", 2, 1, size=48, num_frames=13, return_mask=True
        )
        for m in SYNTHETIC_MOTIONS
    }
    (f_t, m_t), (f_r, m_r) = masks["Translating"], masks["Rotating"]
    np.testing.assert_array_equal(m_t[6], m_r[6])
    np.testing.assert_array_equal(f_t[6], f_r[6])
    for first, second in [
        ("Translating", "Rotating"),
        ("Translating", "Oscillating"),
        ("Oscillating", "Rotating"),
    ]:
        assert np.abs(masks[first][1][0] - masks[second][1][0]).sum() > 10
    # Outside both objects the scene (background, pan, distractors, noise) is the same.
    for m in ("Oscillating", "Rotating"):
        frames, mask = masks[m]
        outside = (mask == 0) & (m_t == 0)
        np.testing.assert_array_equal(frames[outside], f_t[outside])


def _centroid_and_angle(mask):
    ys, xs = np.mgrid[: mask.shape[0], : mask.shape[1]]
    w = mask / mask.sum()
    cx, cy = (w * xs).sum(), (w * ys).sum()
    mxx, myy, mxy = (
        (w * (xs - cx) ** 2).sum(),
        (w * (ys - cy) ** 2).sum(),
        (w * (xs - cx) * (ys - cy)).sum(),
    )
    return np.array([cx, cy]), 0.5 * np.arctan2(2 * mxy, mxx - myy)


@pytest.mark.parametrize("group, clip", [(1, 1), (1, 2), (2, 1), (3, 4)])
def test_motions_follow_their_definition(group, clip):
    size, num_frames = 96, 40
    scene, _, _ = _scene(0, group, clip, size, num_frames)
    camera = scene["camera"]
    checked = 0
    for motion in SYNTHETIC_MOTIONS:
        _, mask = render_synthetic_video(
            f"GreenDots_{motion}", group, clip, size=size, num_frames=num_frames, return_mask=True
        )
        border = np.concatenate([mask[:, 0], mask[:, -1], mask[:, :, 0], mask[:, :, -1]], axis=1)
        if border.max() > 0:
            continue  # partly out of frame: moments are biased
        checked += 1
        measured = [_centroid_and_angle(m) for m in mask]
        world = np.array([c for c, _ in measured]) + camera  # undo the camera pan
        angle = np.unwrap(2 * np.array([a for _, a in measured])) / 2
        velocity = np.diff(world, axis=0)
        if motion == "Translating":
            # Constant velocity, 30-45 % of the frame over the clip, orientation fixed.
            np.testing.assert_allclose(
                velocity, np.broadcast_to(velocity.mean(0), velocity.shape), atol=0.1
            )
            assert 0.28 * size < np.linalg.norm(world[-1] - world[0]) < 0.47 * size
            assert np.ptp(angle) < 0.05
        elif motion == "Oscillating":
            # Back and forth along one axis: the velocity reverses within the clip.
            axis = np.linalg.svd(world - world.mean(0))[2][0]
            along = velocity @ axis
            assert (along > 0.2).any() and (along < -0.2).any()
            assert np.abs(velocity @ np.array([-axis[1], axis[0]])).max() < 0.1
            assert np.ptp(angle) < 0.05
        else:
            # In place, at a constant 0.05-0.09 rad per frame.
            assert np.ptp(world, axis=0).max() < 0.3
            rate = np.diff(angle)
            assert 0.045 < abs(rate.mean()) < 0.095 and np.ptp(rate) < 0.02
    assert checked >= 1


def test_camera_pan_is_the_mean_optical_flow(small):
    # The camera pans by 8-20 % of the frame over the clip, so the mean of each flow field is
    # the pan (this is what the mean flow subtraction of the two-stream paper removes).
    for group, clip in [(1, 1), (2, 1), (3, 1)]:
        path = f"GreenDots_Rotating/v_GreenDots_Rotating_g{group:02d}_c{clip:02d}.avi"
        gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in decode(small / "videos" / path)]
        flows = [
            cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
            for a, b in zip(gray, gray[1:], strict=False)
        ]
        scene, _, _ = _scene(0, group, clip, 32, 12)
        pan = -(scene["camera"][1] - scene["camera"][0])  # image motion per frame
        assert 0.08 * 32 / 11 <= np.linalg.norm(pan) <= 0.2 * 32 / 11 + 1e-6
        mean_flow = np.mean(flows, axis=(0, 1, 2))
        np.testing.assert_allclose(mean_flow, pan, atol=0.05 + 0.2 * np.abs(pan).max())


# ---------------------------------------------------------------------------------------------
# Arguments, path, imports.


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(videos_per_class=(0, 2)), "videos_per_class"),
        (dict(videos_per_class=5), "videos_per_class"),
        (dict(size=8), "size"),
        (dict(num_frames=2), "num_frames"),
        (dict(fps=0), "fps"),
        (dict(seed=-1), "seed"),
        (dict(ext=".mkv"), "ext"),
        (dict(clips_per_group=0), "clips_per_group"),
    ],
)
def test_bad_arguments_name_the_argument(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=f"Expected {name}.*Received: {name}="):
        generate_synthetic_dataset(tmp_path, progress=False, **kwargs)
    assert not (tmp_path / "manifest.json").exists()


def test_bad_render_arguments():
    with pytest.raises(ValueError, match="class_name.*Received: class_name='Jumping'"):
        render_synthetic_video("Jumping")
    with pytest.raises(ValueError, match="Received: group=0"):
        render_synthetic_video(SYNTHETIC_CLASSES[0], group=0)


def test_root_that_is_a_file_is_refused(tmp_path):
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(NotADirectoryError, match="root"):
        generate_synthetic_dataset(file, progress=False)


def test_default_path(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_TWOSTREAM_CACHE", str(tmp_path))
    assert synthetic_dataset_path() == tmp_path / "synthetic-v1"
    assert synthetic_dataset_path(tmp_path / "x") == tmp_path / "x" / "synthetic-v1"
    monkeypatch.delenv("KERAS_TWOSTREAM_CACHE")
    assert synthetic_dataset_path().parent.name == "keras_twostream"


def test_import_does_not_load_keras_or_tensorflow():
    code = (
        "import sys, keras_twostream.datasets; "
        "loaded = [m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_ucf101_reader_loads_the_split_files(small):
    annotations = pytest.importorskip("keras_twostream.data.annotations")
    table = annotations.read_ucf101(small)
    assert table.attrs["classes"] == list(SYNTHETIC_CLASSES)
    assert (table["split"] == "train").sum() == 27 and (table["split"] == "test").sum() == 18
    for path, label in zip(table["path"], table["label"], strict=True):
        assert path.split("/")[0] == SYNTHETIC_CLASSES[label]
