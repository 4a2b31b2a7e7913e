"""tf.data pipelines on tiny frame folders written with OpenCV, checked against NumPy.

The RGB test frames are a smooth grey texture plus a constant per-channel offset, so
their chroma is constant and JPEG decoding (full or windowed) is exact; the
reference values are the frames decoded with `tf.io.decode_jpeg`, then cropped,
flipped and normalised in NumPy.
"""

import json
import logging
import os
import shutil

import keras
import numpy as np
import pandas as pd
import pytest

tf = pytest.importorskip("tensorflow")
cv2 = pytest.importorskip("cv2")

from keras_twostream.data import augment  # noqa: E402
from keras_twostream.data.decoding import DCT_METHOD  # noqa: E402
from keras_twostream.data.guard import DatasetErrors  # noqa: E402
from keras_twostream.data.pipeline import (  # noqa: E402
    make_dataset,
    make_test_dataset,
    predict_video_scores,
)

HEIGHT, WIDTH = 48, 64
BOUND = 20.0


def _texture(rng, low, high):
    noise = rng.uniform(0, 1, (HEIGHT, WIDTH)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), 3)
    noise = (noise - noise.min()) / (noise.max() - noise.min() + 1e-6)
    return low + noise * (high - low)


def write_folder(directory, num_rgb, num_flow=None, seed=0, meta=True, bound=BOUND):
    """A TSN frame folder with distinct textured frames; returns its path."""
    os.makedirs(directory, exist_ok=True)
    num_flow = num_rgb - 1 if num_flow is None else num_flow
    rng = np.random.default_rng(seed)
    for i in range(1, num_rgb + 1):
        grey = _texture(rng, 50, 190)
        rgb = np.stack([grey + 30, grey, grey - 30], axis=-1).round().astype(np.uint8)
        cv2.imwrite(os.path.join(directory, f"img_{i:05d}.jpg"), rgb[..., ::-1])
    for i in range(1, num_flow + 1):
        for axis in "xy":
            q = _texture(rng, 30, 220).round().astype(np.uint8)
            cv2.imwrite(os.path.join(directory, f"{axis}_{i:05d}.jpg"), q)
    if meta:
        description = {
            "algorithm": "dis",
            "bound": bound,
            "short_side": HEIGHT,
            "width": WIDTH,
            "height": HEIGHT,
            "rgb_frames": num_rgb,
            "flow_frames": num_flow,
            "fps": 25.0,
            "source": "synthetic",
            "keras_twostream_version": "test",
        }
        with open(os.path.join(directory, "meta.json"), "w") as f:
            json.dump(description, f)
    return str(directory)


def decoded(directory, name, channels):
    """A frame as the pipeline decodes it: libjpeg's accurate IDCT (OpenCV's pixels)."""
    contents = tf.io.read_file(os.path.join(directory, name))
    image = tf.io.decode_jpeg(contents, channels=channels, dct_method=DCT_METHOD)
    return image.numpy().astype(np.float32)


class Reference:
    """Decoded frames of a folder: rgb[t] (H, W, 3) and flow[t] (H, W, 2), 0-based."""

    def __init__(self, directory, num_rgb, num_flow):
        self.rgb = np.stack(
            [decoded(directory, f"img_{i:05d}.jpg", 3) for i in range(1, num_rgb + 1)]
        )
        self.flow = np.stack(
            [
                np.concatenate(
                    [
                        decoded(directory, f"x_{i:05d}.jpg", 1),
                        decoded(directory, f"y_{i:05d}.jpg", 1),
                    ],
                    axis=-1,
                )
                for i in range(1, num_flow + 1)
            ]
        )

    def flow_field(self, t, window, flip, mean_subtract=True, bound=BOUND):
        y, x, h, w = window
        q = self.flow[t]
        mean = q.mean(axis=(0, 1)) if mean_subtract else np.full(2, 127.5)
        d = (q[y : y + h, x : x + w] - mean) * (2 * bound / 255)
        if flip:
            d = d[:, ::-1] * np.array([-1.0, 1.0])
        return d

    def rgb_frame(self, t, window, flip):
        y, x, h, w = window
        f = self.rgb[t, y : y + h, x : x + w]
        return f[:, ::-1] if flip else f


def numpy_bilinear(image, out_h, out_w):
    """Bilinear resize with half-pixel centres (tf.image.resize without antialias)."""
    in_h, in_w = image.shape[:2]

    def axis(out_n, in_n):
        pos = np.clip((np.arange(out_n) + 0.5) * in_n / out_n - 0.5, 0, in_n - 1)
        lo = np.floor(pos).astype(int)
        return lo, np.minimum(lo + 1, in_n - 1), pos - lo

    y0, y1, wy = axis(out_h, in_h)
    x0, x1, wx = axis(out_w, in_w)
    top = image[y0][:, x0] * (1 - wx)[None, :, None] + image[y0][:, x1] * wx[None, :, None]
    bottom = image[y1][:, x0] * (1 - wx)[None, :, None] + image[y1][:, x1] * wx[None, :, None]
    return top * (1 - wy)[:, None, None] + bottom * wy[:, None, None]


def tsn_centres(num_frames, num_segments, span):
    tick = (num_frames - span + 1) / num_segments
    return [int(tick / 2 + tick * k) for k in range(num_segments)]


def window_of(position, side):
    qy, qx = position
    return (qy * ((HEIGHT - side) // 4), qx * ((WIDTH - side) // 4), side, side)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    directory = write_folder(tmp_path_factory.mktemp("frames") / "v_test", 30)
    return directory, Reference(directory, 30, 29)


def table_of(*paths, labels=None):
    labels = list(range(len(paths))) if labels is None else labels
    return pd.DataFrame({"path": list(paths), "label": labels})


def test_one_draw_applies_to_every_frame_and_modality(video):
    directory, ref = video
    k, length = 3, 3
    ds = make_dataset(
        table_of(*[directory] * 8),
        num_segments=k,
        flow_length=length,
        image_size=HEIGHT,
        scales=(1.0,),
        max_distort=0,
        batch_size=8,
        seed=7,
    )
    inputs, labels = next(iter(ds))
    rgb, flow = inputs["rgb"].numpy(), inputs["flow"].numpy()
    assert rgb.shape == (8, k, HEIGHT, HEIGHT, 3) and rgb.dtype == np.float32
    assert flow.shape == (8, k, HEIGHT, HEIGHT, 2 * length) and flow.dtype == np.float32
    assert sorted(labels.numpy().tolist()) == list(range(8))
    # 48x48 crops of 48x64 frames: the five positions give three distinct windows.
    windows = sorted({window_of(position, HEIGHT) for position in augment.FIVE_POSITIONS})
    assert [w[1] for w in windows] == [0, 8, 16]
    seen = set()
    duration = (30 - (length + 1) + 1) // k  # TSN training segments of the usable starts
    for b in range(8):
        draw = None
        for s in range(k):
            matches = [
                (t, window, flip)
                for t in range(30)
                for window in windows
                for flip in (False, True)
                if np.allclose(rgb[b, s], ref.rgb_frame(t, window, flip) / 255, atol=1e-6)
            ]
            assert len(matches) == 1, f"sample {b} segment {s}: {len(matches)} matches"
            t, window, flip = matches[0]
            assert s * duration <= t < (s + 1) * duration  # inside its TSN segment
            # The same crop and flip for every segment of the sample ...
            assert draw in (None, (window, flip))
            draw = (window, flip)
            # ... and for the flow stack d_t .. d_{t+L-1} (Eq. (1)): x1, y1, x2, y2, ...
            for i in range(length):
                expected = ref.flow_field(t + i, window, flip)
                np.testing.assert_allclose(flow[b, s, ..., 2 * i : 2 * i + 2], expected, atol=1e-4)
        seen.add(draw)
    assert {flip for _, flip in seen} == {False, True}
    assert len({window for window, _ in seen}) >= 2


def test_eval_centre_crop_resize_normalisation(video):
    directory, ref = video
    k, length = 3, 3
    ds = make_dataset(
        table_of(directory),
        num_segments=k,
        flow_length=length,
        image_size=HEIGHT,
        training=False,
        batch_size=1,
        rgb_normalization="torch",
        flow_normalization="bound",
    )
    first = next(iter(ds))[0]
    second = next(iter(ds))[0]
    for key in first:  # centre sampling and centre crop are deterministic
        np.testing.assert_array_equal(first[key].numpy(), second[key].numpy())
    # scale_size = round(48 * 256 / 224) = 55: a centre crop of int(48 * 48 / 55) = 41.
    side = int(HEIGHT * HEIGHT / 55)
    y, x = 2 * ((HEIGHT - side) // 4), 2 * ((WIDTH - side) // 4)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    for s, t in enumerate(tsn_centres(30, k, length + 1)):
        crop = ref.rgb[t, y : y + side, x : x + side]
        expected = (numpy_bilinear(crop, HEIGHT, HEIGHT) / 255 - mean) / std
        np.testing.assert_allclose(first["rgb"][0, s].numpy(), expected, atol=2e-3)
        for i in range(length):
            q = ref.flow[t + i]
            field = numpy_bilinear(q[y : y + side, x : x + side], HEIGHT, HEIGHT) - q.mean(
                axis=(0, 1)
            )
            expected = field * (2 * BOUND / 255) / BOUND
            np.testing.assert_allclose(
                first["flow"][0, s, ..., 2 * i : 2 * i + 2].numpy(), expected, atol=1e-4
            )


def test_mmaction2_normalisation(video):
    """The input of converted MMAction2 TSN checkpoints: its RGB mean/std, flow (q - 128) / 128."""
    directory, ref = video
    ds = make_dataset(
        table_of(directory),
        num_segments=1,
        flow_length=2,
        image_size=HEIGHT,
        training=False,
        batch_size=1,
        rgb_normalization="torch",
        flow_normalization="mmaction",
        mean_subtract_flow=False,
    )
    inputs = next(iter(ds))[0]
    side = int(HEIGHT * HEIGHT / 55)
    y, x = 2 * ((HEIGHT - side) // 4), 2 * ((WIDTH - side) // 4)
    (t,) = tsn_centres(30, 1, 3)
    # MMAction2's numbers on 0..255 RGB (the "torch" preset is the same mean/std on [0, 1]).
    mean, std = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])
    crop = numpy_bilinear(ref.rgb[t, y : y + side, x : x + side], HEIGHT, HEIGHT)
    np.testing.assert_allclose(inputs["rgb"][0, 0].numpy(), (crop - mean) / std, atol=2e-3)
    for i in range(2):
        q = numpy_bilinear(ref.flow[t + i, y : y + side, x : x + side], HEIGHT, HEIGHT)
        np.testing.assert_allclose(
            inputs["flow"][0, 0, ..., 2 * i : 2 * i + 2].numpy(), (q - 128) / 128, atol=1e-5
        )


@pytest.fixture(scope="module")
def extracted_copies(tmp_path_factory):
    """A real clip extracted with flow_means.npy; copies without it and with altered means."""
    from corrupt_inputs import TEST_AVI

    from keras_twostream.data.extract import extract_video

    root = tmp_path_factory.mktemp("extracted")
    stored = root / "stored"
    extract_video(TEST_AVI, stored, flow="dis", short_side=48, max_frames=14)
    whole = shutil.copytree(stored, root / "whole")
    os.remove(whole / "flow_means.npy")  # an older extraction: whole-field means
    shifted = shutil.copytree(stored, root / "shifted")
    means = np.load(stored / "flow_means.npy")
    means[:, 0] += 1.5  # pixels: every x field's stored mean
    np.save(shifted / "flow_means.npy", means)
    return str(stored), str(whole), str(shifted)


def test_stored_flow_means_equal_whole_field_means(extracted_copies, tmp_path):
    stored, whole, shifted = extracted_copies
    # Centre snippets and crops: every row of the table gets the same views, the
    # flow of a stored-means row from windows only, of a whole-field row from
    # whole fields.
    common = dict(num_segments=2, flow_length=3, image_size=32, batch_size=3, training=False)
    inputs, labels = next(iter(make_dataset(table_of(stored, whole, shifted), **common)))
    assert labels.numpy().tolist() == [0, 1, 2]
    flow = inputs["flow"].numpy()
    assert np.abs(flow[1]).max() > 0.1  # real motion, not a trivial comparison
    np.testing.assert_allclose(flow[0], flow[1], rtol=0, atol=2e-5)
    # The stored values are really used: 1.5 px more in the stored x means gives x
    # channels 1.5 px lower.
    np.testing.assert_allclose(flow[2, ..., 0::2] - flow[1, ..., 0::2], -1.5, atol=1e-4)
    np.testing.assert_allclose(flow[2, ..., 1::2], flow[1, ..., 1::2], atol=2e-5)
    # A table whose every usable folder stores its means (the broken one is skipped),
    # and a mirrored view of the test protocol.
    broken = shutil.copytree(stored, tmp_path / "broken")
    np.save(broken / "flow_means.npy", np.zeros((3, 2)))  # 13 flow pairs in meta.json
    with pytest.raises(ValueError, match=r"flow_means\.npy.*3 flow pairs.*13"):
        make_dataset(table_of(str(broken)), flow_length=3)
    errors = DatasetErrors()
    ds = make_dataset(table_of(str(broken), stored), on_error="skip", errors=errors, **common)
    assert errors.count == 1 and errors.records[0]["file"].endswith("flow_means.npy")
    np.testing.assert_allclose(next(iter(ds))[0]["flow"][0], flow[1], rtol=0, atol=2e-5)
    views = [
        x["flow"].numpy()
        for x, _ in make_test_dataset(
            table_of(stored, whole), num_frames=2, crops=10, flow_length=3, image_size=32
        )
    ]
    np.testing.assert_allclose(views[0], views[1], rtol=0, atol=2e-5)
    # View 7 mirrors view 2 (the same corner): flow-x mirrored and negated.
    np.testing.assert_allclose(views[0][7, ..., 0], -views[0][2, ..., ::-1, 0], atol=2e-5)


def test_drop_remainder_is_not_a_failure(tests_data):
    folder = str(tests_data / "mmaction2" / "imgs")
    ds = make_dataset(
        table_of(folder, folder, folder),
        flow_length=5,
        image_size=16,
        batch_size=2,
        drop_remainder=True,
        seed=0,
    )
    assert ds.element_spec[0]["flow"].shape == (2, 3, 16, 16, 10)  # a static batch size
    assert [tuple(x["flow"].shape) for x, _ in ds] == [(2, 3, 16, 16, 10)]
    assert ds.dataset_errors.count == 0


def test_seeded_training_is_reproducible_and_redraws_each_epoch(video):
    directory, _ = video
    kwargs = dict(flow_length=2, image_size=32, batch_size=4)
    table = table_of(*[directory] * 4)

    def epoch(ds):
        return [{k: v.numpy() for k, v in x.items()} for x, _ in ds]

    a = make_dataset(table, seed=3, **kwargs)
    b = make_dataset(table, seed=3, **kwargs)
    c = make_dataset(table, seed=4, **kwargs)
    first_a, first_b, first_c = epoch(a), epoch(b), epoch(c)
    for key in ("rgb", "flow"):
        np.testing.assert_array_equal(first_a[0][key], first_b[0][key])
        assert not np.array_equal(first_a[0][key], first_c[0][key])
    second_a, second_b = epoch(a), epoch(b)
    np.testing.assert_array_equal(second_a[0]["flow"], second_b[0]["flow"])
    assert not np.array_equal(first_a[0]["flow"], second_a[0]["flow"])


def test_rgb_difference_stacks(video):
    directory, ref = video
    k, diffs = 3, 2
    ds = make_dataset(
        table_of(directory),
        modalities=("rgb", "rgb_diff"),
        num_segments=k,
        diff_length=diffs,
        image_size=HEIGHT,
        scale_size=HEIGHT,
        training=False,
        batch_size=1,
    )
    inputs, _ = next(iter(ds))
    assert set(inputs) == {"rgb", "rgb_diff"}
    assert inputs["rgb_diff"].shape == (1, k, HEIGHT, HEIGHT, 3 * diffs)
    window = window_of((2, 2), HEIGHT)
    for s, t in enumerate(tsn_centres(30, k, diffs + 1)):
        np.testing.assert_allclose(
            inputs["rgb"][0, s].numpy(), ref.rgb_frame(t, window, False) / 255, atol=1e-6
        )
        for j in range(diffs):
            expected = (
                ref.rgb_frame(t + j + 1, window, False) - ref.rgb_frame(t + j, window, False)
            ) / 255
            np.testing.assert_allclose(
                inputs["rgb_diff"][0, s, ..., 3 * j : 3 * j + 3].numpy(), expected, atol=1e-6
            )


def test_stpn_multipath_chunks(video):
    directory, ref = video
    paths, tau, length = 3, 4, 2
    ds = make_dataset(
        table_of(directory),
        num_segments=1,
        num_paths=paths,
        path_interval=tau,
        flow_length=length,
        image_size=HEIGHT,
        scale_size=HEIGHT,
        training=False,
        batch_size=1,
        mean_subtract_flow=False,
    )
    inputs, _ = next(iter(ds))
    assert inputs["rgb"].shape == (1, 1, HEIGHT, HEIGHT, 3)
    assert inputs["flow"].shape == (1, paths, HEIGHT, HEIGHT, 2 * length)
    # Block of (P - 1) tau + L = 10 flow fields (11 frames), centred in 30 frames.
    block = tsn_centres(30, 1, (paths - 1) * tau + length + 1)[0]
    window = window_of((2, 2), HEIGHT)
    for p in range(paths):
        for i in range(length):
            expected = ref.flow_field(block + p * tau + i, window, False, mean_subtract=False)
            np.testing.assert_allclose(
                inputs["flow"][0, p, ..., 2 * i : 2 * i + 2].numpy(), expected, atol=1e-4
            )
    centre = block + ((paths - 1) * tau + length) // 2
    np.testing.assert_allclose(
        inputs["rgb"][0, 0].numpy(), ref.rgb_frame(centre, window, False) / 255, atol=1e-6
    )
    # Training draws tau per sample; shapes stay the same.
    train = make_dataset(
        table_of(directory, directory),
        num_segments=1,
        num_paths=paths,
        flow_length=length,
        image_size=32,
        batch_size=2,
        seed=0,
    )
    inputs, _ = next(iter(train))
    assert inputs["flow"].shape == (2, paths, 32, 32, 2 * length)
    with pytest.raises(ValueError, match="num_segments"):
        make_dataset(table_of(directory), num_paths=3)


def test_real_mmaction2_folder_clamps_short_flow(tests_data):
    folder = str(tests_data / "mmaction2" / "imgs")  # 10 RGB frames, 5 flow pairs, no meta.json
    ds = make_dataset(
        table_of(folder, folder, labels=[3, 5]), flow_length=5, image_size=64, batch_size=2, seed=0
    )
    inputs, labels = next(iter(ds))
    assert inputs["rgb"].shape == (2, 3, 64, 64, 3)
    assert inputs["flow"].shape == (2, 3, 64, 64, 10)
    assert labels.dtype == tf.int32 and sorted(labels.numpy().tolist()) == [3, 5]
    assert np.isfinite(inputs["flow"].numpy()).all()
    # L = 10 needs 11 frames: the stack repeats the last flow field.
    ds = make_dataset(table_of(folder), flow_length=10, image_size=64, batch_size=1, training=False)
    flow = next(iter(ds))[0]["flow"].numpy()
    assert flow.shape == (1, 3, 64, 64, 20)
    for i in range(5, 10):
        np.testing.assert_array_equal(flow[..., 2 * i : 2 * i + 2], flow[..., 8:10])
    assert not np.array_equal(flow[..., 0:2], flow[..., 8:10])
    # The MMAction2 list with an offset (frames 3..7) works too.
    table = pd.DataFrame({"path": [folder], "label": [127], "frames": [5], "offset": [2]})
    inputs, _ = next(iter(make_dataset(table, flow_length=5, image_size=32, batch_size=1, seed=1)))
    assert inputs["flow"].shape == (1, 3, 32, 32, 10)


def test_multi_label_rows_give_multi_hot_labels(tests_data):
    folder = str(tests_data / "mmaction2" / "imgs")
    table = pd.DataFrame({"path": [folder, folder], "label": [(0, 2), (1,)]})
    ds = make_dataset(
        table, modalities=("rgb",), image_size=32, batch_size=2, training=False, num_classes=4
    )
    _, labels = next(iter(ds))
    np.testing.assert_array_equal(labels.numpy(), [[1, 0, 1, 0], [0, 1, 0, 0]])
    with pytest.raises(ValueError, match="out of range"):
        make_dataset(table, modalities=("rgb",), num_classes=2)


def _bad_videos(root):
    good = write_folder(root / "good", 6)
    corrupt = write_folder(root / "corrupt", 2)  # one snippet: img_00001 and x/y_00001
    with open(os.path.join(corrupt, "img_00001.jpg"), "wb") as f:
        f.write(b"this is not a JPEG")
    truncated = write_folder(root / "truncated", 2)
    with open(os.path.join(truncated, "x_00001.jpg"), "rb") as f:
        head = f.read()[:300]
    with open(os.path.join(truncated, "x_00001.jpg"), "wb") as f:
        f.write(head)
    missing = write_folder(root / "missing", 6)
    os.remove(os.path.join(missing, "y_00003.jpg"))
    disagree = write_folder(root / "disagree", 6, num_flow=3)  # meta.json: 6 RGB, 3 flow
    return good, corrupt, truncated, missing, disagree


def test_on_error_skip_completes_the_epoch_and_counts(tmp_path, caplog):
    good, corrupt, truncated, missing, disagree = _bad_videos(tmp_path)
    table = table_of(good, corrupt, truncated, missing, disagree, str(tmp_path / "absent"), good)
    errors = DatasetErrors()
    with caplog.at_level(logging.WARNING, logger="keras_twostream.data"):
        ds = make_dataset(
            table,
            flow_length=2,
            image_size=32,
            batch_size=2,
            on_error="skip",
            errors=errors,
            seed=0,
        )
        assert ds.dataset_errors is errors
        assert errors.count == 3  # found up front: missing file, counts, folder
        labels = np.concatenate([y.numpy() for _, y in ds])
    assert sorted(labels.tolist()) == [0, 6]  # the two good rows
    assert errors.count == 5
    problems = {os.path.basename(r["video"]): r for r in errors.records}
    assert problems["missing"]["file"].endswith("y_00003.jpg")
    assert "missing" in problems["missing"]["problem"]
    assert "disagree" in problems["disagree"]["problem"]
    assert "not found" in problems["absent"]["problem"]
    assert problems["corrupt"]["file"].endswith(os.path.join("corrupt", "img_00001.jpg"))
    assert "JPEG" in problems["corrupt"]["problem"]
    assert problems["truncated"]["file"].endswith(os.path.join("truncated", "x_00001.jpg"))
    assert problems["corrupt"]["row"] == 1
    assert "corrupt" in caplog.text and "img_00001.jpg" in caplog.text
    # The next epoch meets the corrupt samples again and still completes.
    assert sum(len(y) for _, y in ds) == 2
    assert errors.count == 7


def test_on_error_raise_names_the_file(tmp_path):
    good, corrupt, truncated, missing, disagree = _bad_videos(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"y_00003\.jpg"):
        make_dataset(table_of(good, missing), flow_length=2)
    with pytest.raises(ValueError, match=r"meta\.json.*disagree"):
        make_dataset(table_of(disagree), flow_length=2)
    with pytest.raises(FileNotFoundError, match="frame folder not found"):
        make_dataset(table_of(str(tmp_path / "absent")))
    ds = make_dataset(
        table_of(good, corrupt), flow_length=2, image_size=32, batch_size=1, training=False
    )
    assert len(ds) == 2
    with pytest.raises(tf.errors.OpError, match=r"corrupt.img_00001\.jpg: is not a valid JPEG"):
        for _ in ds:
            pass
    # RGB-only pipelines do not need the flow files.
    ds = make_dataset(table_of(missing), modalities=("rgb",), image_size=32, batch_size=1)
    assert next(iter(ds))[0]["rgb"].shape == (1, 3, 32, 32, 3)


def test_bad_arguments_name_the_argument(video):
    directory, _ = video
    table = table_of(directory)
    for kwargs, match in [
        ({"modalities": ("rgb", "depth")}, "modalities"),
        ({"on_error": "ignore"}, "on_error"),
        ({"rgb_normalization": "imagenet"}, "rgb_normalization"),
        ({"flow_normalization": "unit"}, "flow_normalization"),
        ({"flow_length": 0}, "flow_length"),
        ({"image_size": (224,)}, "image_size"),
        ({"color_jitter": {"hue": 0.1}}, "color_jitter"),
        ({"flow_bound": 15}, "bound=20 but flow_bound=15"),
    ]:
        with pytest.raises(ValueError, match=match):
            make_dataset(table, **kwargs)
    with pytest.raises(ValueError, match="'label'"):
        make_dataset(pd.DataFrame({"path": [directory]}))
    with pytest.raises(ValueError, match="split"):
        make_dataset(table, split="train")


def test_color_jitter_changes_rgb_only(video):
    directory, _ = video
    common = dict(flow_length=2, image_size=32, batch_size=2, seed=11)
    table = table_of(directory, directory)
    plain = next(iter(make_dataset(table, **common)))[0]
    jittered = next(
        iter(make_dataset(table, color_jitter={"brightness": 0.5, "saturation": 0.5}, **common))
    )[0]
    np.testing.assert_array_equal(plain["flow"].numpy(), jittered["flow"].numpy())
    assert not np.allclose(plain["rgb"].numpy(), jittered["rgb"].numpy())
    assert jittered["rgb"].numpy().min() >= 0 and jittered["rgb"].numpy().max() <= 1


def test_test_dataset_ten_crops_and_flips(video):
    directory, ref = video
    frames_n, length, size = 2, 2, 40
    ds = make_test_dataset(
        table_of(directory),
        num_frames=frames_n,
        crops=10,
        flow_length=length,
        image_size=size,
        scale_size=HEIGHT,
    )
    assert len(ds) == 1
    inputs, label = next(iter(ds))
    views = frames_n * 10
    assert inputs["rgb"].shape == (views, 1, size, size, 3)
    assert inputs["flow"].shape == (views, 1, size, size, 2 * length)
    assert label.numpy() == 0
    rgb, flow = inputs["rgb"].numpy()[:, 0], inputs["flow"].numpy()[:, 0]
    for n, t in enumerate(tsn_centres(30, frames_n, length + 1)):
        for c in range(10):
            position = augment.FIVE_POSITIONS[c % 5]
            window, flip = window_of(position, size), c >= 5
            v = n * 10 + c  # frame-major view order
            np.testing.assert_allclose(rgb[v], ref.rgb_frame(t, window, flip) / 255, atol=1e-6)
            for i in range(length):
                np.testing.assert_allclose(
                    flow[v, ..., 2 * i : 2 * i + 2], ref.flow_field(t + i, window, flip), atol=1e-4
                )


def test_test_dataset_three_crops_and_multipath(video):
    directory, ref = video
    ds = make_test_dataset(
        table_of(directory), modalities=("rgb",), num_frames=3, crops=3, image_size=HEIGHT
    )
    rgb = next(iter(ds))[0]["rgb"].numpy()[:, 0]
    assert rgb.shape == (9, HEIGHT, HEIGHT, 3)
    for n, t in enumerate(tsn_centres(30, 3, 1)):
        for c, x in enumerate((0, 8, 16)):  # start, centre, end of the 64-pixel width
            np.testing.assert_allclose(
                rgb[3 * n + c], ref.rgb[t, :, x : x + HEIGHT] / 255, atol=1e-6
            )
    ds = make_test_dataset(
        table_of(directory), num_frames=2, crops=1, num_paths=3, flow_length=2, image_size=32
    )
    inputs = next(iter(ds))[0]
    assert inputs["flow"].shape == (2, 3, 32, 32, 4)
    assert inputs["rgb"].shape == (2, 1, 32, 32, 3)
    again = next(iter(ds))[0]  # tau is drawn with a fixed seed: the same views every time
    np.testing.assert_array_equal(inputs["flow"].numpy(), again["flow"].numpy())


def test_predict_video_scores_averages_views(tests_data):
    folder = str(tests_data / "mmaction2" / "imgs")
    table = table_of(folder, folder, labels=[1, 2])
    ds = make_test_dataset(table, modalities=("rgb",), num_frames=3, crops=3, image_size=16)
    rng = np.random.default_rng(0)
    inputs = keras.Input((1, 16, 16, 3), name="rgb")
    flat = keras.layers.Flatten()(inputs)
    dense_a = keras.layers.Dense(4, name="a")
    dense_b = keras.layers.Dense(2, name="b")
    model = keras.Model({"rgb": inputs}, {"a": dense_a(flat), "b": dense_b(flat)})
    weights_a = [
        rng.normal(size=(768, 4)).astype("float32") * 0.05,
        rng.normal(size=4).astype("float32"),
    ]
    dense_a.set_weights(weights_a)
    scores, labels = predict_video_scores(model, ds, return_labels=True)
    assert set(scores) == {"a", "b"} and scores["a"].shape == (2, 4) and scores["b"].shape == (2, 2)
    np.testing.assert_array_equal(labels, [1, 2])
    for i, (x, _) in enumerate(ds):
        views = x["rgb"].numpy().reshape(9, -1)
        logits = views @ weights_a[0] + weights_a[1]
        np.testing.assert_allclose(scores["a"][i], logits.mean(axis=0), rtol=1e-4, atol=1e-4)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        soft = predict_video_scores(model, ds.skip(i).take(1), activation="softmax")["a"][0]
        np.testing.assert_allclose(soft, probs.mean(axis=0), rtol=1e-4, atol=1e-5)
    chunked = predict_video_scores(model, ds, max_views_per_call=4)
    np.testing.assert_allclose(chunked["a"], scores["a"], rtol=1e-5, atol=1e-5)


def test_model_fit_consumes_the_dataset(tests_data, tmp_path):
    """Runs on the active Keras backend: tf.data feeds TensorFlow and JAX alike."""
    folder = shutil.copytree(tests_data / "mmaction2" / "imgs", tmp_path / "imgs")
    ds = make_dataset(
        table_of(str(folder), str(folder), labels=[0, 1]),
        flow_length=5,
        image_size=16,
        batch_size=2,
        seed=0,
    )
    rgb = keras.Input((3, 16, 16, 3), name="rgb")
    flow = keras.Input((3, 16, 16, 10), name="flow")
    pooled = keras.layers.Concatenate()(
        [keras.layers.GlobalAveragePooling3D()(rgb), keras.layers.GlobalAveragePooling3D()(flow)]
    )
    model = keras.Model({"rgb": rgb, "flow": flow}, keras.layers.Dense(2)(pooled))
    model.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    history = model.fit(ds, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.distribute is TensorFlow's")
def test_fit_under_mirrored_strategy(tests_data):
    from conftest import two_cpu_strategy

    strategy = two_cpu_strategy()
    folder = str(tests_data / "mmaction2" / "imgs")
    ds = make_dataset(
        table_of(*[folder] * 4, labels=[0, 1, 0, 1]),
        flow_length=5,
        image_size=16,
        batch_size=4,
        seed=0,
    )
    with strategy.scope():
        rgb = keras.Input((3, 16, 16, 3), name="rgb")
        flow = keras.Input((3, 16, 16, 10), name="flow")
        pooled = keras.layers.Concatenate()(
            [
                keras.layers.GlobalAveragePooling3D()(rgb),
                keras.layers.GlobalAveragePooling3D()(flow),
            ]
        )
        model = keras.Model({"rgb": rgb, "flow": flow}, keras.layers.Dense(2)(pooled))
        model.compile(
            optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
    history = model.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_two_stream_augmentation_crops_anywhere_flips_and_jitters(video):
    # The two-stream paper, Sect. 5: a fixed-size crop "randomly cropped from the selected frame
    # ... from the whole frame", random flips, and AlexNet's PCA "RGB jittering". With
    # scale_size = HEIGHT the crop is image_size pixels of the short side and is not resized.
    directory, ref = video
    n, side = 24, 40
    ds = make_dataset(
        table_of(*[directory] * n),
        num_segments=1,
        flow_length=2,
        image_size=side,
        scale_size=HEIGHT,
        augmentation="two_stream",
        batch_size=n,
        seed=3,
    )
    inputs, _ = next(iter(ds))
    rgb, flow = inputs["rgb"].numpy(), inputs["flow"].numpy()
    draw = ds._draw_epoch(0)
    eigvec, eigval = np.array(augment.IMAGENET_EIGVEC), np.array(augment.IMAGENET_EIGVAL)
    offsets = set()
    for b in range(n):
        slack_y, slack_x = HEIGHT - side, WIDTH - side
        y = min(int(np.floor(draw["quarter_y"][b] / 4 * (slack_y + 1))), slack_y)
        x = min(int(np.floor(draw["quarter_x"][b] / 4 * (slack_x + 1))), slack_x)
        window, flip = (y, x, side, side), bool(draw["flip"][b])
        t = int(np.ravel(draw["rgb_index"][b])[0]) - 1
        shift = eigvec @ (draw["lighting"][b] * eigval)
        expected = np.clip(ref.rgb_frame(t, window, flip) / 255 + shift, 0, 1)
        np.testing.assert_allclose(rgb[b, 0], expected, atol=1e-5)
        for i in range(2):  # the flow stack gets the same window and flip
            np.testing.assert_allclose(
                flow[b, 0, ..., 2 * i : 2 * i + 2], ref.flow_field(t + i, window, flip), atol=1e-4
            )
        offsets.add((y, x))
    # Anywhere in the frame, not TSN's five positions; flips both ways; a real jitter.
    assert len({x for _, x in offsets}) > 5 and len(offsets) > 10
    assert set(draw["flip"].tolist()) == {False, True}
    assert np.abs(draw["lighting"]).max() > 0.05
    with pytest.raises(ValueError, match="augmentation"):
        make_dataset(table_of(directory), augmentation="paper")


def test_test_dataset_random_snippets_stpn_protocol(video):
    # STPN Sect. 4.7: "10 video snippets are randomly sampled": here one at a random offset in
    # each of N equal parts of the video, seeded (the same views on every pass).
    directory, ref = video
    n = 5

    def frames_of(**kwargs):
        ds = make_test_dataset(
            table_of(directory), modalities=("rgb",), num_frames=n, crops=3, image_size=HEIGHT,
            **kwargs,
        )  # fmt: skip
        rgb = next(iter(ds))[0]["rgb"].numpy()[::3, 0]  # crop 0 of every snippet: x = 0
        found = []
        for view in rgb:
            matches = [t for t in range(30) if np.allclose(view, ref.rgb[t, :, :HEIGHT] / 255)]
            assert len(matches) == 1
            found.append(matches[0])
        return found

    uniform = frames_of()
    assert uniform == tsn_centres(30, n, 1)
    draws = {seed: frames_of(snippets="random", seed=seed) for seed in (0, 1, 2)}
    for found in draws.values():
        assert all(6 * k <= t < 6 * (k + 1) for k, t in enumerate(found))  # one per part
    assert frames_of(snippets="random", seed=0) == draws[0]
    assert len({tuple(found) for found in draws.values()} | {tuple(uniform)}) > 2
    with pytest.raises(ValueError, match="snippets"):
        make_test_dataset(table_of(directory), snippets="dense")
