"""Optical flow: known displacements, warping real frames, quantisation maths, colour coding."""

import pickle

import cv2
import numpy as np
import pytest
from corrupt_inputs import TEST_AVI

from keras_twostream.data.flow import (
    OpticalFlow,
    _color_wheel,
    compute_flow,
    dequantize_flow,
    flow_to_color,
    quantize_flow,
)
from keras_twostream.data.video import read_video


def _texture(height=72, width=88, seed=0):
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.random((height, width)).astype(np.float32), (0, 0), 2.0)
    return cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


@pytest.fixture(scope="module")
def real_pair():
    frames = read_video(TEST_AVI, short_side=96)
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames[40:42]]
    return gray[0], gray[1]


@pytest.mark.parametrize(
    "algorithm, tolerance", [("tvl1", 0.05), ("dis", 0.1), ("farneback", 0.05)]
)
def test_recovers_a_known_translation(algorithm, tolerance):
    prev = _texture()
    # Content moves 3 px right and 1 px down from prev to next: flow (u, v) = (3, 1).
    next_frame = np.roll(prev, (1, 3), axis=(0, 1))
    flow = compute_flow(prev, next_frame, algorithm)
    assert flow.shape == (72, 88, 2) and flow.dtype == np.float32
    interior = flow[16:-16, 16:-16]
    np.testing.assert_allclose(interior.mean(axis=(0, 1)), [3.0, 1.0], atol=tolerance)
    assert np.abs(interior - [3.0, 1.0]).max() < 10 * tolerance


@pytest.mark.parametrize("algorithm", ["tvl1", "dis", "farneback"])
def test_flow_warps_real_next_frame_onto_previous(real_pair, algorithm):
    prev, next_frame = real_pair
    if algorithm == "tvl1":  # TV-L1 is slow: a crop of the moving region is enough
        prev, next_frame = prev[16:80, 64:], next_frame[16:80, 64:]
    flow = OpticalFlow(algorithm)(prev, next_frame)
    h, w = prev.shape
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    # prev(x) ~ next(x + d(x)) for forward flow d from prev to next.
    warped = cv2.remap(next_frame, grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR)
    inner = (slice(8, -8), slice(8, -8))
    error_warped = np.abs(warped[inner].astype(float) - prev[inner]).mean()
    error_identity = np.abs(next_frame[inner].astype(float) - prev[inner]).mean()
    assert error_warped < 0.5 * error_identity


def test_rgb_input_is_converted_to_gray():
    prev = _texture()
    next_frame = np.roll(prev, 2, axis=1)
    rgb = OpticalFlow("farneback")(
        np.repeat(prev[..., None], 3, -1), np.repeat(next_frame[..., None], 3, -1)
    )
    gray = OpticalFlow("farneback")(prev, next_frame)
    np.testing.assert_array_equal(rgb, gray)


def test_parameters_reach_opencv():
    prev = _texture()
    next_frame = np.roll(prev, 2, axis=1)
    default = OpticalFlow("farneback")(prev, next_frame)
    changed = OpticalFlow("farneback", winsize=5, levels=1)(prev, next_frame)
    expected = cv2.calcOpticalFlowFarneback(prev, next_frame, None, 0.5, 1, 5, 3, 5, 1.2, 0)
    np.testing.assert_array_equal(changed, expected)
    assert not np.array_equal(default, changed)


def test_optical_flow_pickles_for_worker_processes():
    solver = OpticalFlow("dis")
    prev = _texture()
    solver(prev, prev)
    clone = pickle.loads(pickle.dumps(solver))
    np.testing.assert_array_equal(
        clone(prev, np.roll(prev, 1, 1)), solver(prev, np.roll(prev, 1, 1))
    )


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="algorithm"):
        OpticalFlow("lucas-kanade")
    with pytest.raises(ValueError, match="winsize"):
        OpticalFlow("tvl1", winsize=3)
    with pytest.raises(ValueError, match="preset"):
        OpticalFlow("dis", preset="slow")(_texture(), _texture())
    with pytest.raises(ValueError, match="same shape"):
        compute_flow(_texture(), _texture(40, 40), "dis")
    with pytest.raises(ValueError, match="uint8"):
        compute_flow(_texture().astype(np.float32), _texture().astype(np.float32), "dis")
    with pytest.raises(ValueError, match="bound"):
        quantize_flow(np.zeros(3), bound=0)


def test_quantize_matches_the_formula():
    rng = np.random.default_rng(1)
    bound = 20.0
    flow = rng.uniform(-35, 35, size=(50, 40, 2)).astype(np.float32)
    q = quantize_flow(flow, bound)
    expected = np.rint((np.clip(flow, -bound, bound) + bound) * 255.0 / (2 * bound))
    assert q.dtype == np.uint8
    np.testing.assert_array_equal(q, expected.astype(np.uint8))
    np.testing.assert_array_equal(
        quantize_flow(np.array([-1e9, -20, 0, 20, 1e9]), 20), [0, 0, 128, 255, 255]
    )
    np.testing.assert_allclose(
        dequantize_flow(np.arange(256), bound), np.arange(256) * 40 / 255 - 20, atol=1e-5
    )


@pytest.mark.parametrize("bound", [20.0, 15.0, 4.0])
def test_dequantize_inverts_within_half_a_step(bound):
    rng = np.random.default_rng(2)
    flow = rng.uniform(-bound, bound, size=(10_000,)).astype(np.float32)
    error = np.abs(dequantize_flow(quantize_flow(flow, bound), bound) - flow)
    assert error.max() <= bound / 255 + 1e-5
    assert error.max() > 0.9 * bound / 255  # the bound is tight, not loose
    clipped = dequantize_flow(quantize_flow(np.array([-2 * bound, 2 * bound]), bound), bound)
    np.testing.assert_allclose(clipped, [-bound, bound], atol=1e-5)


def test_jpeg_round_trip_of_real_flow(real_pair, tmp_path):
    bound = 20.0
    flow = OpticalFlow("dis")(*real_pair)
    for channel, name in ((0, "x.jpg"), (1, "y.jpg")):
        q = quantize_flow(flow[..., channel], bound)
        path = str(tmp_path / name)
        assert cv2.imwrite(path, q, [cv2.IMWRITE_JPEG_QUALITY, 95])
        back = dequantize_flow(cv2.imread(path, cv2.IMREAD_GRAYSCALE), bound)
        error = np.abs(back - np.clip(flow[..., channel], -bound, bound))
        step = 2 * bound / 255
        # Quantisation (half a step) plus JPEG slack at quality 95: a few steps at most,
        # well under one step on average.
        assert error.max() <= bound / 255 + 4 * step
        assert error.mean() <= bound / 255 + 0.5 * step


def test_flow_to_color_follows_the_middlebury_wheel():
    wheel = _color_wheel()
    assert wheel.shape == (55, 3)
    np.testing.assert_array_equal(wheel[0], [255, 0, 0])
    np.testing.assert_array_equal(wheel[15], [255, 255, 0])
    np.testing.assert_array_equal(wheel[21], [0, 255, 0])
    flow = np.array([[[0.0, 0.0], [1.0, 0.0], [0.5, 0.0], [2.0, 0.0], [0.0, 1.0]]])
    image = flow_to_color(flow, max_magnitude=1.0)
    assert image.shape == (1, 5, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[0, 0], [255, 255, 255])  # no motion: white
    np.testing.assert_array_equal(image[0, 1], [255, 0, 0])  # right, full magnitude: red
    np.testing.assert_array_equal(image[0, 2], [255, 127, 127])  # half magnitude: 1 - r(1 - c)
    np.testing.assert_array_equal(image[0, 3], [191, 0, 0])  # beyond the maximum: x0.75
    # Down: angle atan2(-1, 0)/pi = -0.5 -> position 13.5 between wheel[13] and wheel[14].
    np.testing.assert_array_equal(image[0, 4], np.floor((wheel[13] + wheel[14]) / 2))
    # Default maximum is the largest magnitude in the field.
    np.testing.assert_array_equal(flow_to_color(flow)[0, 3], [255, 0, 0])
    with pytest.raises(ValueError, match="flow.shape"):
        flow_to_color(np.zeros((4, 4)))
