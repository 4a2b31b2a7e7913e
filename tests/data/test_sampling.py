"""Exact tests of the frame index sampling (pure NumPy)."""

import numpy as np
import pytest

from keras_twostream.data import sampling


def tsn_val_indices(num_frames, num_segments, new_length):
    """TSN's reference `_get_val_indices` (tsn-pytorch dataset.py), 0-based."""
    tick = (num_frames - new_length + 1) / float(num_segments)
    return np.array([int(tick / 2.0 + tick * x) for x in range(num_segments)])


@pytest.mark.parametrize(
    "num_frames,num_segments,span", [(30, 3, 1), (164, 3, 11), (250, 25, 1), (101, 7, 6), (9, 3, 1)]
)
def test_test_mode_matches_tsn_centres(num_frames, num_segments, span):
    starts = sampling.segment_starts(num_frames, num_segments, span=span, training=False)
    np.testing.assert_array_equal(starts, tsn_val_indices(num_frames, num_segments, span))
    # Deterministic: same answer, no generator needed.
    np.testing.assert_array_equal(
        starts, sampling.segment_starts(num_frames, num_segments, span=span, training=False)
    )


def test_test_starts_are_equally_spaced_25_frames():
    starts = sampling.test_starts(250, num_frames=25)
    np.testing.assert_array_equal(starts, np.arange(5, 250, 10))
    assert sampling.test_starts(100, num_frames=4).tolist() == [12, 37, 62, 87]


def test_training_draws_one_start_inside_each_segment():
    rng = np.random.default_rng(0)
    num_frames, k, span = 47, 3, 6
    usable = num_frames - span + 1  # 42
    duration = usable // k  # 14
    starts = sampling.segment_starts(np.full(2000, num_frames), k, span=span, rng=rng)
    assert starts.shape == (2000, k)
    for segment in range(k):
        lo, hi = segment * duration, (segment + 1) * duration
        column = starts[:, segment]
        assert column.min() == lo and column.max() == hi - 1
        # Uniform within the segment: every offset is drawn.
        assert set(column.tolist()) == set(range(lo, hi))
    # A snippet never runs past the end of the video.
    assert starts.max() + span <= num_frames


def test_training_is_reproducible_with_a_seed():
    a = sampling.segment_starts([30, 90, 7], 3, rng=np.random.default_rng(5))
    b = sampling.segment_starts([30, 90, 7], 3, rng=np.random.default_rng(5))
    c = sampling.segment_starts([30, 90, 7], 3, rng=np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_short_video_training_draws_sorted_starts_with_repeats():
    rng = np.random.default_rng(1)
    starts = sampling.segment_starts(np.full(500, 2), 3, rng=rng)  # usable 2 < K = 3
    assert starts.min() == 0 and starts.max() == 1
    assert np.all(np.diff(starts, axis=1) >= 0)
    # Test mode repeats the centres of the short range.
    assert sampling.segment_starts(2, 3, training=False).tolist() == [0, 1, 1]


def test_vectorised_rows_equal_scalar_calls_in_test_mode():
    lengths = np.array([5, 30, 164, 11])
    spans = np.array([1, 6, 11, 3])
    rows = sampling.segment_starts(lengths, 3, span=spans, training=False)
    for i, (n, s) in enumerate(zip(lengths, spans, strict=True)):
        np.testing.assert_array_equal(
            rows[i], sampling.segment_starts(int(n), 3, span=int(s), training=False)
        )


def test_snippet_positions_clamp_short_videos():
    # The real MMAction2 folder: 10 RGB frames and 5 flow pairs; L = 10 must clamp.
    positions = sampling.snippet_positions([0, 0, 0], 10, 5)
    np.testing.assert_array_equal(positions[0], [0, 1, 2, 3, 4, 4, 4, 4, 4, 4])
    assert positions.shape == (3, 10)
    # Per-video lengths broadcast over segments.
    positions = sampling.snippet_positions([[2, 8], [0, 1]], 3, np.array([[10], [2]]))
    np.testing.assert_array_equal(positions, [[[2, 3, 4], [8, 9, 9]], [[0, 1, 1], [1, 1, 1]]])


def test_clamp_positions():
    np.testing.assert_array_equal(sampling.clamp_positions([-3, 0, 4, 9], 5), [0, 0, 4, 4])
    np.testing.assert_array_equal(sampling.clamp_positions([2, 3], 0), [0, 0])


def test_draw_intervals_covers_one_to_ten_inclusive():
    rng = np.random.default_rng(0)
    taus = sampling.draw_intervals((1, 10), 5000, rng=rng)
    assert set(taus.tolist()) == set(range(1, 11))
    counts = np.bincount(taus)[1:]
    assert counts.min() > 400  # roughly uniform: 500 expected per value
    np.testing.assert_array_equal(sampling.draw_intervals(4, 3), [4, 4, 4])
    with pytest.raises(ValueError, match="interval"):
        sampling.draw_intervals((5, 2), 3, rng=rng)
    with pytest.raises(ValueError, match="interval"):
        sampling.draw_intervals(0, 3)


def test_multipath_chunks_are_tau_apart_and_centred_in_test_mode():
    starts, centre = sampling.multipath_chunk_starts(60, 3, 10, 5, training=False)
    # Block of (3 - 1) * 5 + 10 = 20 flow fields (21 frames) centred in 60 frames.
    np.testing.assert_array_equal(starts, [20, 25, 30])
    # The RGB frame is the centre of the middle chunk: its start + L / 2.
    assert centre == starts[1] + 5
    positions = sampling.snippet_positions(starts, 10, 59)
    assert positions.min() == 20 and positions.max() == 39


def test_multipath_training_stays_inside_long_videos_and_clamps_short_ones():
    rng = np.random.default_rng(3)
    taus = sampling.draw_intervals((1, 10), 1000, rng=rng)
    starts, centre = sampling.multipath_chunk_starts(np.full(1000, 100), 3, 10, taus, rng=rng)
    np.testing.assert_array_equal(np.diff(starts, axis=1), np.stack([taus, taus], axis=1))
    flow = sampling.snippet_positions(starts, 10, 99)
    ends = starts[:, -1] + 9
    assert starts.min() >= 0 and ends.max() <= 98  # 99 flow fields, never clamped here
    np.testing.assert_array_equal(flow[:, :, 0], starts)
    assert np.all((centre >= starts[:, 0]) & (centre <= ends + 1))
    # Different block starts are drawn.
    assert len(np.unique(starts[:, 0])) > 20
    # A 12-frame video cannot hold 3 chunks of 10 at tau = 10: clamped, no crash.
    starts, centre = sampling.multipath_chunk_starts(12, 3, 10, 10, rng=rng)
    np.testing.assert_array_equal(starts, [0, 10, 20])
    flow = sampling.snippet_positions(starts, 10, 11)
    assert flow.max() == 10 and centre == 11


def test_multipath_single_path_is_a_centred_flow_stack():
    starts, centre = sampling.multipath_chunk_starts(30, 1, 10, 7, training=False)
    # span 11 frames: the same centre as one TSN segment with span L + 1.
    np.testing.assert_array_equal(starts, sampling.segment_starts(30, 1, span=11, training=False))
    assert centre == starts[0] + 5


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_positions": 10, "num_segments": 0}, "num_segments"),
        ({"num_positions": 10, "num_segments": 3, "span": 0}, "span"),
        ({"num_positions": 10.5, "num_segments": 3}, "num_positions"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sampling.segment_starts(training=False, **kwargs)


def test_training_without_generator_is_an_error():
    with pytest.raises(ValueError, match="rng"):
        sampling.segment_starts(10, 3, training=True)
