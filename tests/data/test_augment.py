"""Augmentation ops against NumPy references and TSN's own formulas."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from keras_twostream.data import augment  # noqa: E402


def tsn_multiscale_pairs(image_w, image_h, scales, max_distort):
    """TSN's GroupMultiScaleCrop._sample_crop_size crop sizes (w, h), literally."""
    base_size = min(image_w, image_h)
    crop_sizes = [int(base_size * x) for x in scales]
    pairs = []
    for i, h in enumerate(crop_sizes):
        for j, w in enumerate(crop_sizes):
            if abs(i - j) <= max_distort:
                pairs.append((w, h))
    return pairs


def tsn_fix_offsets(image_w, image_h, crop_w, crop_h):
    """TSN's fill_fix_offset(more_fix_crop=False) as (x, y) offsets."""
    w_step = (image_w - crop_w) // 4
    h_step = (image_h - crop_h) // 4
    return [
        (0, 0),
        (4 * w_step, 0),
        (0, 4 * h_step),
        (4 * w_step, 4 * h_step),
        (2 * w_step, 2 * h_step),
    ]


def numpy_bilinear(image, out_h, out_w):
    """Bilinear resize with half-pixel centres (what tf.image.resize does without antialias)."""
    in_h, in_w = image.shape[:2]

    def axis(out_n, in_n):
        pos = (np.arange(out_n) + 0.5) * in_n / out_n - 0.5
        pos = np.clip(pos, 0, in_n - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, in_n - 1)
        return lo, hi, pos - lo

    y0, y1, wy = axis(out_h, in_h)
    x0, x1, wx = axis(out_w, in_w)
    top = image[y0][:, x0] * (1 - wx)[None, :, None] + image[y0][:, x1] * wx[None, :, None]
    bottom = image[y1][:, x0] * (1 - wx)[None, :, None] + image[y1][:, x1] * wx[None, :, None]
    return top * (1 - wy)[:, None, None] + bottom * wy[:, None, None]


def test_scale_pairs_are_tsns():
    pairs = augment.scale_pairs(augment.TSN_SCALES, max_distort=1)
    assert len(pairs) == 10  # 4 square + 3 + 3 one step apart
    expected = [(w, h) for (w, h) in tsn_multiscale_pairs(256, 256, augment.TSN_SCALES, 1)]
    got = [(int(256 * sw), int(256 * sh)) for sh, sw in pairs]
    assert got == expected
    assert augment.scale_pairs((1.0, 0.5), max_distort=0) == [(1.0, 1.0), (0.5, 0.5)]
    with pytest.raises(ValueError, match="scales"):
        augment.scale_pairs((1.2,))


@pytest.mark.parametrize("height,width", [(256, 340), (240, 320), (256, 256), (480, 272), (48, 64)])
def test_crop_window_matches_tsn_for_every_pair_and_position(height, width):
    pairs = augment.scale_pairs(augment.TSN_SCALES, 1)
    tsn_sizes = tsn_multiscale_pairs(width, height, augment.TSN_SCALES, 1)
    for (sh, sw), (crop_w, crop_h) in zip(pairs, tsn_sizes, strict=True):
        offsets = tsn_fix_offsets(width, height, crop_w, crop_h)
        for (qy, qx), (x, y) in zip(augment.FIVE_POSITIONS, offsets, strict=True):
            window = augment.crop_window(height, width, sh, sw, qy, qx).numpy().tolist()
            assert window == [y, x, crop_h, crop_w]


def test_draw_crop_params_cover_pairs_and_positions():
    params = augment.draw_crop_params(np.random.default_rng(0), 4000)
    pairs = set(zip(params["scale_h"].tolist(), params["scale_w"].tolist(), strict=True))
    assert pairs == set(augment.scale_pairs())
    positions = set(zip(params["quarter_y"].tolist(), params["quarter_x"].tolist(), strict=True))
    assert positions == set(augment.FIVE_POSITIONS)
    again = augment.draw_crop_params(np.random.default_rng(0), 4000)
    for key in params:
        np.testing.assert_array_equal(params[key], again[key])


def test_crop_and_resize_matches_numpy_bilinear():
    rng = np.random.default_rng(0)
    frames = rng.uniform(0, 255, (3, 40, 52, 2)).astype(np.float32)
    window = augment.crop_window(40, 52, 0.875, 0.75, 4, 2)  # y=4*1, x=2*5, h=35, w=30
    y, x, h, w = window.numpy().tolist()
    assert (y, x, h, w) == (4, 10, 35, 30)
    out = augment.crop_and_resize(tf.constant(frames), window, (24, 20)).numpy()
    for t in range(3):
        expected = numpy_bilinear(frames[t, y : y + h, x : x + w], 24, 20)
        np.testing.assert_allclose(out[t], expected, rtol=0, atol=1e-3)


def test_flip_mirrors_frames_and_negates_only_flow_x():
    rng = np.random.default_rng(1)
    frames = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(augment.flip_frames(frames, True).numpy(), frames[:, :, ::-1])
    np.testing.assert_array_equal(augment.flip_frames(frames, False).numpy(), frames)
    flow = rng.normal(size=(2, 4, 5, 2)).astype(np.float32)
    flipped = augment.flip_flow(flow, True).numpy()
    np.testing.assert_array_equal(flipped[..., 0], -flow[:, :, ::-1, 0])
    np.testing.assert_array_equal(flipped[..., 1], flow[:, :, ::-1, 1])
    np.testing.assert_array_equal(augment.flip_flow(flow, False).numpy(), flow)


def test_flip_equals_quantised_255_minus_q():
    # Negating dequantised flow-x is the quantised map q -> 255 - q.
    q = np.arange(256, dtype=np.float32).reshape(1, 16, 16, 1)
    q2 = np.concatenate([q, q], axis=-1)
    flipped = augment.flip_flow(augment.dequantize_flow(q2, 20.0), True).numpy()
    expected_x = augment.dequantize_flow(255.0 - q[:, :, ::-1], 20.0).numpy()
    np.testing.assert_allclose(flipped[..., :1], expected_x, atol=1e-5)


def test_dequantize_inverts_the_contract_quantisation():
    bound = 20.0
    d = np.linspace(-25, 25, 101).astype(np.float32)
    q = np.round((np.clip(d, -bound, bound) + bound) * 255 / (2 * bound))
    back = augment.dequantize_flow(q, bound).numpy()
    np.testing.assert_allclose(
        back, np.clip(d, -bound, bound), atol=bound / 255 * 1.001
    )  # half a step
    np.testing.assert_allclose(
        augment.dequantize_flow([0, 255], 15.0).numpy(), [-15, 15], atol=1e-6
    )


def test_normalize_rgb_presets_match_keras_applications():
    imagenet_utils = pytest.importorskip("keras.applications.imagenet_utils")
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 255, (2, 3, 4, 3)).astype(np.float32)
    for preset in ("caffe", "torch", "tf"):
        expected = imagenet_utils.preprocess_input(
            x.copy(), mode=preset, data_format="channels_last"
        )
        np.testing.assert_allclose(
            augment.normalize_rgb(x, preset).numpy(), np.asarray(expected), atol=1e-4
        )
    np.testing.assert_allclose(augment.normalize_rgb(x, "unit").numpy(), x / 255.0, atol=1e-6)
    np.testing.assert_array_equal(augment.normalize_rgb(x, "none").numpy(), x)
    # caffe is BGR: the first channel is blue minus its ImageNet mean.
    pixel = np.array([[[10.0, 20.0, 30.0]]], np.float32)
    np.testing.assert_allclose(
        augment.normalize_rgb(pixel, "caffe").numpy()[0, 0],
        [30 - 103.939, 20 - 116.779, 10 - 123.68],
        atol=1e-4,
    )
    with pytest.raises(ValueError, match="rgb_normalization"):
        augment.normalize_rgb(x, "imagenet")


def test_adjust_color_matches_numpy_and_identity():
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (2, 6, 7, 3)).astype(np.float32)
    np.testing.assert_allclose(augment.adjust_color(x, 1.0, 1.0, 1.0).numpy(), x, atol=1e-6)
    b, c, s = 1.2, 0.7, 1.4
    w = np.array([0.299, 0.587, 0.114], np.float32)
    ref = np.clip(x * b, 0, 1)
    mean = (ref @ w).mean(axis=(1, 2), keepdims=True)[..., None]
    ref = np.clip((ref - mean) * c + mean, 0, 1)
    grey = (ref @ w)[..., None]
    ref = np.clip((ref - grey) * s + grey, 0, 1)
    np.testing.assert_allclose(augment.adjust_color(x, b, c, s).numpy(), ref, atol=1e-5)


def test_draw_color_jitter_ranges():
    draws = augment.draw_color_jitter(
        np.random.default_rng(0), 1000, brightness=0.4, saturation=0.2
    )
    assert 0.6 <= draws["brightness"].min() and draws["brightness"].max() <= 1.4
    assert draws["brightness"].std() > 0.1
    np.testing.assert_array_equal(draws["contrast"], 1.0)
    assert 0.8 <= draws["saturation"].min() and draws["saturation"].max() <= 1.2
    with pytest.raises(ValueError, match="contrast"):
        augment.draw_color_jitter(np.random.default_rng(0), 1, contrast=-1)


def test_draw_flips_probability():
    flips = augment.draw_flips(np.random.default_rng(0), 4000)
    assert 0.45 < flips.mean() < 0.55
    assert not augment.draw_flips(np.random.default_rng(0), 10, 0.0).any()


def test_test_crop_params():
    assert augment.test_crop_params(1, 224) == [(0.875, 0.875, 2, 2, False)]
    three = augment.test_crop_params(3, 224)
    assert [c[2:] for c in three] == [(0, 0, False), (2, 2, False), (4, 4, False)]
    assert all(c[:2] == (1.0, 1.0) for c in three)
    ten = augment.test_crop_params(10, 224)
    assert len(ten) == 10
    assert [c[2:4] for c in ten[:5]] == list(augment.FIVE_POSITIONS)
    assert [c[:4] for c in ten[5:]] == [c[:4] for c in ten[:5]]
    assert [c[4] for c in ten] == [False] * 5 + [True] * 5
    # Three crops on a landscape frame: start, centre and end of the width.
    windows = [augment.crop_window(256, 340, *c[:4]).numpy().tolist() for c in three]
    assert windows == [[0, 0, 256, 256], [0, 42, 256, 256], [0, 84, 256, 256]]
    with pytest.raises(ValueError, match="crops"):
        augment.test_crop_params(5, 224)
    with pytest.raises(ValueError, match="scale_size"):
        augment.test_crop_params(1, 224, scale_size=200)


def test_crop_window_python_floats_are_not_rounded_through_float32():
    # float32(40 / 48) * 48 = 39.99999; the window must still be 40 pixels.
    window = augment.crop_window(48, 64, 40 / 48, 40 / 48, 2, 2).numpy().tolist()
    assert window == [4, 12, 40, 40]


def test_float_quarters_place_the_crop_uniformly_over_every_offset():
    # A uniform quarter in [0, 4] gives each of the slack + 1 offsets the same share of [0, 4].
    height, width, side = 40, 60, 30  # slack 10 and 30
    quarters = (np.arange(4400) + 0.5) / 1100  # a fine uniform grid of [0, 4]
    for slack, axis in ((height - side, 0), (width - side, 1)):
        offsets = [
            int(augment.crop_window(height, width, 0.75, 0.75, q, q).numpy()[axis])
            for q in quarters[::4]
        ]
        counts = np.bincount(offsets, minlength=slack + 1)
        assert len(counts) == slack + 1  # from 0 to the far edge, never beyond
        assert counts.max() - counts.min() <= 1
    # Integer quarters keep TSN's fixed positions.
    assert augment.crop_window(height, width, 0.75, 0.75, 4, 4).numpy().tolist() == [8, 28, 30, 30]


def test_lighting_is_alexnets_pca_noise():
    rng = np.random.default_rng(0)
    images = rng.uniform(0.2, 0.8, (2, 5, 5, 3)).astype(np.float32)
    alpha = augment.draw_lighting(rng, 1)[0]
    eigvec, eigval = np.array(augment.IMAGENET_EIGVEC), np.array(augment.IMAGENET_EIGVAL)
    # The eigenvectors are orthonormal columns of ImageNet's RGB covariance.
    np.testing.assert_allclose(eigvec.T @ eigvec, np.eye(3), atol=2e-4)
    expected = np.clip(images + eigvec @ (alpha * eigval), 0, 1)
    np.testing.assert_allclose(augment.adjust_lighting(images, alpha).numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(augment.adjust_lighting(images, np.zeros(3)).numpy(), images)
    draws = augment.draw_lighting(np.random.default_rng(1), 20000)
    np.testing.assert_allclose(draws.std(axis=0), 0.1, atol=0.003)
