"""Trajectory stacking (Eq. (2) of the two-stream paper) and the bi-directional flow input."""

import cv2
import numpy as np
import pandas as pd
import pytest

from keras_twostream.data.flow import dequantize_flow, quantize_flow
from keras_twostream.data.frames import backward_flow_frame_paths, flow_frame_paths
from keras_twostream.data.pipeline import make_test_dataset
from keras_twostream.data.trajectory import trajectory_stack


def _bilinear_ref(field, x, y):
    """Bilinear sample of `[H, W, 2]` at one point, the point clamped to the frame."""
    h, w = field.shape[:2]
    x = min(max(x, 0.0), w - 1.0)
    y = min(max(y, 0.0), h - 1.0)
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    ax, ay = x - x0, y - y0
    top = (1 - ax) * field[y0, x0] + ax * field[y0, x1]
    bottom = (1 - ax) * field[y1, x0] + ax * field[y1, x1]
    return (1 - ay) * top + ay * bottom


def _eq2_ref(fields):
    """Eq. (2), pixel by pixel: p_1 = (u, v); p_k = p_{k-1} + d_{tau+k-2}(p_{k-1})."""
    length, h, w, _ = fields.shape
    out = np.zeros_like(fields, dtype=np.float64)
    for v in range(h):
        for u in range(w):
            p = np.array([u, v], np.float64)
            for k in range(length):
                d = _bilinear_ref(fields[k].astype(np.float64), p[0], p[1])
                out[k, v, u] = d
                p = np.clip(p + d, 0.0, [w - 1.0, h - 1.0])
    return out


def _smooth_fields(rng, shape, amplitude):
    fields = rng.normal(size=shape).astype(np.float32)
    for index in np.ndindex(*shape[:-3]):
        for c in range(2):
            plane = cv2.GaussianBlur(fields[index][..., c], (0, 0), 2.0)
            fields[index][..., c] = plane / (np.abs(plane).max() + 1e-6) * amplitude
    return fields


def test_trajectory_stack_matches_a_numpy_reference_of_eq2():
    rng = np.random.default_rng(0)
    # 2 groups of L = 4 fields of up to 3 px: trajectories cross pixels and leave the frame.
    fields = _smooth_fields(rng, (2, 4, 9, 11, 2), 3.0)
    out = trajectory_stack(fields).numpy()
    for g in range(2):
        np.testing.assert_allclose(out[g], _eq2_ref(fields[g]), atol=1e-4)
    # The first field is sampled on the grid itself (p_1 = (u, v)).
    np.testing.assert_array_equal(out[:, 0], fields[:, 0])
    # Runs restart at the grid: [2, 2] is two trajectories of two fields each.
    halves = trajectory_stack(fields, chains=[2, 2]).numpy()
    np.testing.assert_allclose(halves[1, 2:], _eq2_ref(fields[1, 2:]), atol=1e-4)
    with pytest.raises(ValueError, match="chains"):
        trajectory_stack(fields, chains=[3, 2])


def _folder(root, rng, size=24, length=4):
    """A frame folder (no meta.json) with L forward and L backward quantised fields."""
    root.mkdir()
    for i in range(1, length + 2):
        cv2.imwrite(str(root / f"img_{i:05d}.jpg"), np.full((size, size, 3), 100, np.uint8))
    fields = {}
    for kind, paths in (("forward", flow_frame_paths), ("backward", backward_flow_frame_paths)):
        raw = _smooth_fields(rng, (length, size, size, 2), 2.5) + rng.normal(0, 0.5, 2)
        decoded = []
        for i in range(1, length + 1):
            q = quantize_flow(raw[i - 1], 20.0)
            planes = []
            for path, c in zip(paths(root, i), (0, 1), strict=True):
                cv2.imwrite(path, np.ascontiguousarray(q[..., c]), [cv2.IMWRITE_JPEG_QUALITY, 95])
                planes.append(cv2.imread(path, cv2.IMREAD_GRAYSCALE))  # what a reader gets
            decoded.append(dequantize_flow(np.stack(planes, -1), 20.0))
        fields[kind] = np.stack(decoded)
    return fields


@pytest.mark.parametrize("stacking", ["flow", "trajectory"])
def test_pipeline_builds_the_bidirectional_and_trajectory_inputs(tmp_path, stacking):
    rng = np.random.default_rng(1)
    fields = _folder(tmp_path / "v", rng)
    table = pd.DataFrame({"path": [str(tmp_path / "v")], "label": [0]})
    # 3 crops of a square frame are the whole frame; 4 fields + 5 frames: one snippet, tau = 3.
    ds = make_test_dataset(
        table,
        modalities=("flow",),
        num_frames=1,
        crops=3,
        flow_length=4,
        image_size=24,
        flow_stacking=stacking,
        bidirectional_flow=True,
    )
    flow = next(iter(ds))[0]["flow"].numpy()[0, 0]  # [H, W, 2L]
    # Sect. 3.1: forward fields tau, tau+1 (x_3, x_4), then backward tau-1, tau-2 (bx_2, bx_1).
    stack = np.stack([fields["forward"][2], fields["forward"][3]])
    back = np.stack([fields["backward"][1], fields["backward"][0]])
    if stacking == "trajectory":  # both halves start at the grid in frame tau
        stack, back = _eq2_ref(stack), _eq2_ref(back)
    expected = np.concatenate([stack, back])  # [L, H, W, 2]
    # Mean flow subtraction: each stored field's own mean.
    means = np.concatenate([fields["forward"][2:4], fields["backward"][1::-1]]).mean(
        axis=(1, 2), keepdims=True
    )
    expected = (expected - means).transpose(1, 2, 0, 3).reshape(24, 24, 8)
    np.testing.assert_allclose(flow, expected, atol=2e-3)


def test_bidirectional_flow_needs_an_even_length_and_backward_files(tmp_path):
    rng = np.random.default_rng(2)
    _folder(tmp_path / "v", rng)
    table = pd.DataFrame({"path": [str(tmp_path / "v")], "label": [0]})
    with pytest.raises(ValueError, match="flow_length must be even"):
        make_test_dataset(table, modalities=("flow",), flow_length=3, bidirectional_flow=True)
    for path in (tmp_path / "v").glob("bx_*"):
        path.unlink()
    with pytest.raises(FileNotFoundError, match="bx_00001.jpg: no backward flow"):
        make_test_dataset(table, modalities=("flow",), flow_length=4, bidirectional_flow=True)
    # on_error="skip": the folder without backward flow is left out and recorded.
    _folder(tmp_path / "w", rng)
    both = pd.DataFrame({"path": [str(tmp_path / "v"), str(tmp_path / "w")], "label": [0, 1]})
    ds = make_test_dataset(
        both,
        modalities=("flow",),
        num_frames=1,
        crops=1,
        flow_length=4,
        image_size=16,
        bidirectional_flow=True,
        on_error="skip",
    )
    assert [int(label) for _, label in ds] == [1]
    assert [r["video"] for r in ds.dataset_errors.records] == [str(tmp_path / "v")]
    with pytest.raises(ValueError, match="flow_stacking"):
        make_test_dataset(table, modalities=("flow",), flow_length=4, flow_stacking="tracks")
