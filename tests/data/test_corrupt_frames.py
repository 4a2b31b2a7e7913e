"""Issue 20: every undecodable or truncated frame JPEG is raised or skipped-and-recorded, never
accepted, on every decode path (RGB, flow x/y, crop-window decoding, whole-field decoding,
stored flow means, test-time views), and an epoch holds exactly the good samples.

The frame folders are copies of the real MMAction2 folder in tests/data/mmaction2 (JPEGs
written by a real extractor), one with `meta.json` + `flow_means.npy` (the flow crop-window
path) and one without (whole fields decoded and averaged).
"""

import os
import shutil

import numpy as np
import pandas as pd
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("cv2")

from corrupt_inputs import (  # noqa: E402
    IMGS,
    JPEG_VARIANTS,
    add_stored_means,
    copy_frame_folder,
    corrupt_frame,
)

from keras_twostream.data import DatasetErrors, make_dataset, make_test_dataset  # noqa: E402
from keras_twostream.data.decoding import _decode, jpeg_problem  # noqa: E402

VARIANTS = sorted(JPEG_VARIANTS)
COMMON = dict(flow_length=2, image_size=32, num_segments=1)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_decoder_refuses_every_variant(variant):
    data = (IMGS / "img_00001.jpg").read_bytes()
    bad = JPEG_VARIANTS[variant](data)
    assert jpeg_problem(data) is None
    assert jpeg_problem(bad).startswith("is not a valid JPEG")
    # Whole image and crop window (the window lies in the top rows, which a truncated
    # JPEG still holds: tf.io.decode_and_crop_jpeg alone returned it without error).
    for channels in (3, 1):
        for window in (None, tf.constant([0, 0, 8, 8])):
            good = _decode([tf.constant(data)], channels, window)[0]
            assert good.shape[-1] == channels
            with pytest.raises(tf.errors.InvalidArgumentError):
                _decode([tf.constant(bad)], channels, window)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("clean")
    plain = copy_frame_folder(base / "plain")  # no meta.json: whole flow fields
    stored = add_stored_means(copy_frame_folder(base / "stored"))  # crop windows of flow
    return plain, stored


KINDS = [("rgb", "img_"), ("x", "x_"), ("y", "y_")]


def _videos(root, folders, variants):
    """Two good videos and, for each variant, three with every file of one kind corrupt
    (RGB of a folder without meta.json, flow-x and flow-y of folders with stored means);
    a `bad_y` video is last, so that its drop is at the very end of the epoch."""
    plain, stored = folders
    paths = {"good_stored": (stored, None, None), "good_plain": (plain, None, None)}
    for variant in variants:
        for kind, prefix in KINDS:
            paths[f"bad_{kind}_{variant}"] = (plain if kind == "rgb" else stored, prefix, variant)
    out = {}
    for name, (source, prefix, variant) in paths.items():
        target = root / name
        shutil.copytree(source, target)
        for path in sorted(target.glob(f"{prefix}*.jpg") if prefix else []):
            corrupt_frame(path, variant)
        out[name] = str(target)
    return out


def _table(paths, names):
    return pd.DataFrame({"path": [paths[n] for n in names], "label": list(range(len(names)))})


def _check_records(errors, paths):
    records = {os.path.basename(r["video"]): r for r in errors.records}
    assert len(errors.records) == len(records) == len(paths) - 2
    for name, record in records.items():
        _, kind, variant = name.split("_", 2)
        assert os.path.dirname(record["file"]) == paths[name]
        assert os.path.basename(record["file"]).startswith(dict(KINDS)[kind])
        # Zero-byte files are already found by the up-front folder scan.
        expected = "empty (0-byte)" if variant == "empty" else "is not a valid JPEG"
        assert record["problem"].startswith(expected), record


def test_skip_drops_names_and_counts_every_variant(tmp_path, folders):
    paths = _videos(tmp_path, folders, VARIANTS)
    names = list(paths)
    table = _table(paths, names)
    good = sorted(names.index(n) for n in ("good_stored", "good_plain"))
    errors = DatasetErrors()
    # Training: random crops (one view: crop-window decoding), shuffled, batches of 2.
    ds = make_dataset(table, batch_size=2, on_error="skip", errors=errors, seed=0, **COMMON)
    labels = sorted(np.concatenate([y.numpy() for _, y in ds]).tolist())
    assert labels == good  # exactly the two good videos in the epoch
    _check_records(errors, paths)
    # Test-time views (evaluate, predict): 10 crops, whole images decoded.
    errors = DatasetErrors()
    ds = make_test_dataset(
        table, num_frames=2, crops=10, on_error="skip", errors=errors, flow_length=2, image_size=32
    )
    assert [int(y) for _, y in ds] == good
    _check_records(errors, paths)


@pytest.mark.parametrize("variant", ["truncated", "png_renamed", "random", "empty"])
def test_raise_stops_within_the_epochs_known_steps(tmp_path, folders, variant):
    paths = _videos(tmp_path, folders, [variant])
    # The bad video is the last sample, in the last batch: `model.fit` takes exactly
    # len(ds) batches, so the failure must surface in them (before issue 20's fix it was
    # only seen by a sentinel batch that fit never pulls: 3 of 4 samples, exit status 0).
    # Batches [0, 1] and [2]: sample 3 is missing from a batch that still exists.
    table = _table(paths, ["good_stored", "good_plain", "good_stored", f"bad_y_{variant}"])
    if variant == "empty":  # found by the up-front folder scan, when the dataset is made
        with pytest.raises((ValueError, FileNotFoundError), match=r"bad_y.*y_00001\.jpg"):
            make_dataset(table, batch_size=2, training=False, **COMMON)
        return
    ds = make_dataset(table, batch_size=2, training=False, **COMMON)
    assert len(ds) == 2
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"bad_y_\w+.y_0000\d\.jpg: is not a valid JPEG"
    ):
        for _ in ds.take(len(ds)):
            pass
