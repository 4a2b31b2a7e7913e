"""TV-L1 in keras.ops against OpenCV's DualTVL1OpticalFlow: building blocks and whole solver.

The whole-solver tests use reduced iteration counts (OpenCV is given the same ones), so one
small XLA program is compiled; the accuracy figures at OpenCV's defaults and 340x256 come
from `benchmarks/bench_tvl1.py`.
"""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from keras import ops

from keras_twostream.flow import median5x5, pyramid_sizes, tvl1
from keras_twostream.flow.median import MEDIAN25_PROGRAM
from keras_twostream.flow.tvl1 import (
    _centered_gradient,
    _divergence,
    _forward_gradient,
    _linear_matrix,
    _resize,
    _to_gray_255,
    _warp_cubic,
)

# Few iterations, two levels: the same algorithm OpenCV runs with these settings.
SMALL = dict(nscales=2, warps=2, outer_iterations=3, inner_iterations=10)
SMALL_CV = dict(nscales=2, warps=2, outerIterations=3, innnerIterations=10)  # (sic)


def _real_frame(tests_data, size=(64, 48)):
    image = cv2.imread(str(tests_data / "mmaction2" / "imgs" / "img_00001.jpg"))
    return cv2.cvtColor(cv2.resize(image, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)


def _moved(frame, kind):
    """`(frame0, frame1, flow)` with frame0(x) = frame1(x + flow(x)): a known motion."""
    h, w = frame.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    if kind == "translate":
        mx, my = xs + 1.5, ys - 0.75
    elif kind == "rotate":
        a = np.deg2rad(3.0)
        mx = cx + np.cos(a) * (xs - cx) - np.sin(a) * (ys - cy)
        my = cy + np.sin(a) * (xs - cx) + np.cos(a) * (ys - cy)
    else:  # zoom in by 4 %
        mx, my = cx + 1.04 * (xs - cx), cy + 1.04 * (ys - cy)
    flow = np.stack([mx - xs, my - ys], axis=-1).astype(np.float32)
    frame0 = cv2.remap(
        frame.astype(np.float32),
        mx.astype(np.float32),
        my.astype(np.float32),
        cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT,
    )
    return np.clip(np.rint(frame0), 0, 255).astype(np.uint8), frame, flow


def _epe(a, b):
    return np.hypot(a[..., 0] - b[..., 0], a[..., 1] - b[..., 1])


def test_median_network_matches_opencv_medianblur():
    rng = np.random.default_rng(0)
    planes = rng.normal(size=(3, 13, 17)).astype(np.float32)
    planes[1] = np.round(planes[1])  # many ties
    planes[2, :, :8] = 0.0  # flat region and an edge
    out = np.asarray(median5x5(planes))
    for plane, got in zip(planes, out, strict=True):
        np.testing.assert_array_equal(got, cv2.medianBlur(plane, 5))
    assert len(MEDIAN25_PROGRAM) < 200  # far below a full sort of 25 (~300 min/max)


def test_building_blocks_match_opencv():
    rng = np.random.default_rng(1)
    image = (rng.random((27, 31)) * 255).astype(np.float32)
    # Bilinear pyramid step (fx = fy = 0.8) and the upsampling to a given size.
    small = cv2.resize(image, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
    assert [small.shape] == pyramid_sizes(27, 31, nscales=2)[1:]
    h, w = small.shape
    down = _resize(image[None], _linear_matrix(h, 27, 1.25), _linear_matrix(w, 31, 1.25))
    np.testing.assert_allclose(np.asarray(down)[0], small, atol=1e-3)
    up = _resize(small[None], _linear_matrix(27, h, h / 27), _linear_matrix(31, w, w / 31))
    expected = cv2.resize(small, (31, 27), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(np.asarray(up)[0], expected, atol=1e-3)
    # Bicubic warping, zero outside the image (remap's default BORDER_CONSTANT).
    u1 = rng.normal(0, 2.5, image.shape).astype(np.float32)
    u2 = rng.normal(0, 2.5, image.shape).astype(np.float32)
    ys, xs = np.mgrid[0:27, 0:31].astype(np.float32)
    warped = np.asarray(_warp_cubic(image[None, ..., None], u1[None], u2[None]))[0, ..., 0]
    expected = cv2.remap(image, xs + u1, ys + u2, cv2.INTER_CUBIC)
    np.testing.assert_allclose(warped, expected, atol=2e-3)
    # Centred gradient (one-sided at the borders), forward gradient, divergence = -grad^T.
    dx, dy = (np.asarray(g)[0] for g in _centered_gradient(image[None]))
    np.testing.assert_allclose(dx[:, 1:-1], (image[:, 2:] - image[:, :-2]) / 2, atol=1e-4)
    np.testing.assert_allclose(dx[:, 0], (image[:, 1] - image[:, 0]) / 2, atol=1e-4)
    np.testing.assert_allclose(dy[-1], (image[-1] - image[-2]) / 2, atol=1e-4)
    gx, gy = (np.asarray(g)[0].astype(np.float64) for g in _forward_gradient(u1[None]))
    p1 = rng.normal(size=image.shape).astype(np.float32)
    p2 = rng.normal(size=image.shape).astype(np.float32)
    # <grad u, p> = -<u, div p> for p vanishing where the forward differences are zero.
    p1[:, -1] = 0.0
    p2[-1, :] = 0.0
    div = np.asarray(_divergence(p1[None], p2[None]))[0].astype(np.float64)
    np.testing.assert_allclose(np.sum(gx * p1 + gy * p2), -np.sum(u1 * div), rtol=1e-4)


def test_gray_conversion_is_opencvs():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (2, 9, 11, 3), dtype=np.uint8)
    gray = np.asarray(_to_gray_255(ops.convert_to_tensor(rgb), "frames_a"))
    expected = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb]).astype(np.float32)
    np.testing.assert_array_equal(gray, expected)


@pytest.fixture
def known_motion(tests_data):
    frame = _real_frame(tests_data)
    return [_moved(frame, kind) for kind in ("translate", "rotate", "zoom")]


def test_tvl1_matches_opencv_and_the_known_motion(known_motion):
    a = np.stack([m[0] for m in known_motion])
    b = np.stack([m[1] for m in known_motion])
    flow = np.asarray(tvl1(a, b, **SMALL))
    assert flow.shape == (3, 48, 64, 2) and flow.dtype == np.float32
    solver = cv2.optflow.DualTVL1OpticalFlow_create(**SMALL_CV)
    for (frame0, frame1, truth), ours in zip(known_motion, flow, strict=True):
        reference = solver.calc(frame0, frame1, None)
        # The same algorithm: differences of float rounding only (measured ~1e-6 px; without
        # the median filter they would be ~0.013 px).
        assert np.median(_epe(ours, reference)) < 1e-3
        assert np.percentile(_epe(ours, reference), 99) < 1e-2
        # As accurate as OpenCV against the true motion (+0.05 px, the bound).
        assert _epe(ours, truth).mean() <= _epe(reference, truth).mean() + 0.05
        assert _epe(ours, truth).mean() < 0.5 * np.hypot(truth[..., 0], truth[..., 1]).mean()
    # A pair's flow does not depend on its batch: convergence is decided per pair.
    flipped = np.asarray(tvl1(a[::-1], b[::-1], **SMALL))[::-1]
    np.testing.assert_allclose(flipped, flow, atol=1e-5)


def test_tvl1_rejects_bad_arguments():
    a = np.zeros((1, 20, 20), np.uint8)
    with pytest.raises(ValueError, match="lambda"):
        tvl1(a, a, lambda_=0)
    with pytest.raises(ValueError, match="Unknown TV-L1 parameters"):
        tvl1(a, a, innerIterations=3)
    with pytest.raises(NotImplementedError, match="gamma"):
        tvl1(a, a, gamma=0.1)
    with pytest.raises(ValueError, match="frames_a"):
        tvl1(np.zeros((20, 20), np.uint8), np.zeros((20, 20), np.uint8), warps=1)


def test_jax_backend_runs_the_same_solver(tests_data):
    # The JAX path (jax.jit) in a fresh process, against OpenCV with the same settings.
    script = f"""
import cv2, numpy as np
from keras_twostream.flow import tvl1
frame = cv2.imread({str(tests_data / "mmaction2" / "imgs" / "img_00001.jpg")!r}, 0)
a = cv2.resize(frame, (32, 24), interpolation=cv2.INTER_AREA)
b = np.roll(a, 1, axis=1)
ours = np.asarray(tvl1(a[None], b[None], nscales=1, warps=2, outer_iterations=2))[0]
ref = cv2.optflow.DualTVL1OpticalFlow_create(nscales=1, warps=2, outerIterations=2).calc(a, b, None)
print(float(np.abs(ours - ref).max()), type(tvl1(a[None], b[None], nscales=1, warps=2, outer_iterations=2)).__module__)
"""
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    difference, module = result.stdout.split()
    assert float(difference) < 1e-3 and module.startswith("jax")
