"""Tests of CompactBilinear (STCB, Algorithm 1 of the STPN paper) against NumPy references."""

import itertools

import keras
import numpy as np
import pytest
from keras import ops
from keras.src.testing import TestCase

from keras_twostream.layers import compact_bilinear
from keras_twostream.layers.compact_bilinear import CompactBilinear

BACKEND = keras.backend.backend()


def _sketch_params(layer):
    """The layer's hashes and signs as NumPy arrays, in input order."""
    hashes = [np.asarray(ops.convert_to_numpy(h)) for h in layer.hashes]
    signs = [np.asarray(ops.convert_to_numpy(s)) for s in layer.signs]
    return hashes, signs


def _outer_product_sketch(vectors, hashes, signs, d):
    """Count Sketch of the explicit outer product v_1 ⊗ ... ⊗ v_m (float64).

    The outer product is sketched with the combined hash (h_1 + ... + h_m) mod d and
    the combined sign s_1 * ... * s_m, which is what Algorithm 1 computes without
    forming the outer product (Pham & Pagh's Tensor Sketch).
    """
    vectors = [np.asarray(v, np.float64) for v in vectors]
    lead = np.broadcast_shapes(*(v.shape[:-1] for v in vectors))
    outer = np.ones(lead + (1,))
    combined_hash = np.zeros(1, np.int64)
    combined_sign = np.ones(1)
    for v, h, s in zip(vectors, hashes, signs, strict=True):
        outer = (outer[..., :, None] * v[..., None, :]).reshape(lead + (-1,))
        combined_hash = (combined_hash[:, None] + h[None, :]).reshape(-1)
        combined_sign = (combined_sign[:, None] * s[None, :]).reshape(-1)
    projection = np.zeros((combined_hash.size, d))
    projection[np.arange(combined_hash.size), combined_hash % d] = combined_sign
    return outer @ projection


def _gradients(fn, inputs):
    """Gradients of the scalar fn(*inputs) with respect to every input, as NumPy."""
    inputs = [ops.convert_to_tensor(x) for x in inputs]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(inputs)
            value = fn(*inputs)
        return [g.numpy() for g in tape.gradient(value, inputs)]
    if BACKEND == "jax":
        import jax

        grad = jax.jit(jax.grad(fn, argnums=tuple(range(len(inputs)))))
        return [np.asarray(g) for g in grad(*inputs)]
    pytest.skip(f"no gradient helper for backend {BACKEND}")


@pytest.mark.filterwarnings("ignore:.*shuffle=True.*:UserWarning")
@pytest.mark.filterwarnings("ignore:The model does not have any trainable weights:UserWarning")
class CompactBilinearLayerTest(TestCase):
    def test_layer_vectors(self):
        self.run_layer_test(
            CompactBilinear,
            init_kwargs={"output_dim": 16, "seed": 7},
            input_shape=((2, 5), (2, 4)),
            expected_output_shape=(2, 16),
            expected_output_dtype="float32",
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=4,
            supports_masking=False,
        )

    def test_layer_broadcast_maps_three_inputs(self):
        self.run_layer_test(
            CompactBilinear,
            init_kwargs={"output_dim": 9, "seed": 1, "signed_sqrt": True, "l2_normalize": True},
            input_shape=((2, 3, 3, 5), (2, 1, 1, 4), (2, 3, 3, 3)),
            expected_output_shape=(2, 3, 3, 9),
            expected_output_dtype="float32",
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=6,
            run_training_check=False,  # test_layer_vectors and the fit tests train
        )


@pytest.mark.parametrize(
    "shapes, d",
    [
        ([(3, 5), (3, 4)], 16),
        ([(3, 5), (3, 4)], 7),  # odd d: irfft must be told fft_length=d
        ([(2, 4), (2, 3), (2, 5)], 11),
        ([(2, 3, 3, 4), (2, 1, 1, 5)], 8),  # a vector broadcast over a map's locations
        ([(2, 1, 3, 3), (1, 2, 1, 2), (2, 2, 3, 4)], 6),
    ],
)
def test_equals_count_sketch_of_outer_product(shapes, d):
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(s).astype("float32") for s in shapes]
    layer = CompactBilinear(output_dim=d, seed=3)
    out = ops.convert_to_numpy(layer(inputs))
    hashes, signs = _sketch_params(layer)
    expected = _outer_product_sketch(inputs, hashes, signs, d)
    assert out.dtype == np.float32
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("form", ["flat", "transposed"])
def test_both_sketch_forms_match_reference(form, monkeypatch):
    # The layer picks the faster of two scatter-add forms per backend; force each one.
    monkeypatch.setattr(
        compact_bilinear, "_FLAT_SKETCH_BACKENDS", (BACKEND,) if form == "flat" else ()
    )
    rng = np.random.default_rng(9)
    shapes = [(2, 3, 2, 5), (2, 1, 1, 4), (1, 3, 2, 3)]
    inputs = [rng.standard_normal(s).astype("float32") for s in shapes]
    layer = CompactBilinear(output_dim=9, seed=10)
    out = ops.convert_to_numpy(layer(inputs))
    hashes, signs = _sketch_params(layer)
    np.testing.assert_allclose(
        out, _outer_product_sketch(inputs, hashes, signs, 9), rtol=1e-4, atol=1e-5
    )


def test_broadcast_equals_explicit_tiling():
    rng = np.random.default_rng(1)
    spatial = rng.standard_normal((2, 3, 4, 6)).astype("float32")
    temporal = rng.standard_normal((2, 1, 1, 5)).astype("float32")
    layer = CompactBilinear(output_dim=10, seed=4)
    broadcast = ops.convert_to_numpy(layer([spatial, temporal]))
    tiled = ops.convert_to_numpy(layer([spatial, np.tile(temporal, (1, 3, 4, 1))]))
    np.testing.assert_allclose(broadcast, tiled, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("position", [0, 1, 2])
def test_linear_in_each_input(position):
    rng = np.random.default_rng(position)
    shapes = [(4, 6), (4, 5), (4, 3)]
    inputs = [rng.standard_normal(s).astype("float32") for s in shapes]
    other = rng.standard_normal(shapes[position]).astype("float32")
    layer = CompactBilinear(output_dim=12, seed=5)

    def run(x):
        return ops.convert_to_numpy(layer(inputs[:position] + [x] + inputs[position + 1 :]))

    a, b = 1.5, -0.75
    combined = run(a * inputs[position] + b * other)
    np.testing.assert_allclose(
        combined, a * run(inputs[position]) + b * run(other), rtol=1e-4, atol=1e-5
    )


def test_sum_of_bins_is_product_of_signed_sums():
    # The zero-frequency bin of a circular convolution is the product of the sums:
    # sum_k z_k = prod_i sum_j s_i(j) v_i(j), exactly, for any p and d.
    rng = np.random.default_rng(2)
    inputs = [rng.standard_normal((3, p)).astype("float32") for p in (300, 200, 100)]
    layer = CompactBilinear(output_dim=256, seed=6)
    out = ops.convert_to_numpy(layer(inputs)).astype(np.float64)
    _, signs = _sketch_params(layer)
    expected = np.prod([v.astype(np.float64) @ s for v, s in zip(inputs, signs, strict=True)], 0)
    np.testing.assert_allclose(out.sum(-1), expected, rtol=1e-4, atol=1e-3)


def test_signed_sqrt_and_l2_normalize():
    rng = np.random.default_rng(3)
    inputs = [rng.standard_normal((4, 6)).astype("float32"), rng.standard_normal((4, 5))]
    plain = ops.convert_to_numpy(CompactBilinear(16, seed=8)(inputs)).astype(np.float64)
    rooted = np.sign(plain) * np.sqrt(np.abs(plain))
    sqrt_only = CompactBilinear(16, seed=8, signed_sqrt=True)(inputs)
    l2_only = CompactBilinear(16, seed=8, l2_normalize=True)(inputs)
    both = CompactBilinear(16, seed=8, signed_sqrt=True, l2_normalize=True)(inputs)
    np.testing.assert_allclose(ops.convert_to_numpy(sqrt_only), rooted, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        ops.convert_to_numpy(l2_only),
        plain / np.linalg.norm(plain, axis=-1, keepdims=True),
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(both),
        rooted / np.linalg.norm(rooted, axis=-1, keepdims=True),
        rtol=1e-5,
        atol=1e-6,
    )
    # A zero input gives a zero output, not NaN.
    zeros = [np.zeros((1, 6), "float32"), np.zeros((1, 5), "float32")]
    out = ops.convert_to_numpy(
        CompactBilinear(16, seed=8, signed_sqrt=True, l2_normalize=True)(zeros)
    )
    np.testing.assert_array_equal(out, np.zeros((1, 16), "float32"))


def test_hashes_and_signs_are_drawn_once_from_the_seed():
    shapes = [(1, 40), (1, 40), (1, 30)]
    a = CompactBilinear(output_dim=20, seed=11)
    a.build(shapes)
    b = CompactBilinear.from_config(a.get_config())
    b.build(shapes)
    c = CompactBilinear(output_dim=20, seed=12)
    c.build(shapes)
    (ha, sa), (hb, sb), (hc, _) = _sketch_params(a), _sketch_params(b), _sketch_params(c)
    for i in range(3):
        assert ha[i].dtype == np.int32 and sa[i].dtype == np.float32
        assert ha[i].min() >= 0 and ha[i].max() < 20
        assert set(np.unique(sa[i])) == {-1.0, 1.0}
        np.testing.assert_array_equal(ha[i], hb[i])
        np.testing.assert_array_equal(sa[i], sb[i])
        assert not np.array_equal(ha[i], hc[i])
    assert not np.array_equal(ha[0], ha[1])  # each input has its own hash
    # The sketch parameters are constants (Algorithm 1, line 1: drawn only if not initialised).
    assert not a.trainable_weights and len(a.non_trainable_weights) == 6
    # seed=None draws a seed that is kept in the config.
    d = CompactBilinear(output_dim=20)
    assert isinstance(d.get_config()["seed"], int)
    assert CompactBilinear.from_config(d.get_config()).seed == d.seed


def _tiny_model(**kwargs):
    spatial = keras.Input((3, 3, 6), name="spatial")
    temporal = keras.Input((1, 1, 5), name="temporal")
    fused = CompactBilinear(output_dim=16, seed=21, name="stcb", **kwargs)([spatial, temporal])
    return keras.Model({"spatial": spatial, "temporal": temporal}, fused)


def _tiny_inputs():
    rng = np.random.default_rng(4)
    return {
        "spatial": rng.standard_normal((2, 3, 3, 6)).astype("float32"),
        "temporal": rng.standard_normal((2, 1, 1, 5)).astype("float32"),
    }


def test_keras_file_round_trip(tmp_path):
    model = _tiny_model(signed_sqrt=True, l2_normalize=True)
    layer = model.get_layer("stcb")
    # Replace the drawn hashes: the reloaded model must take them from the file,
    # not redraw them from the seed.
    rng = np.random.default_rng(5)
    layer.set_weights(
        [
            rng.integers(0, 16, 6).astype("int32"),
            rng.choice([-1.0, 1.0], 6).astype("float32"),
            rng.integers(0, 16, 5).astype("int32"),
            rng.choice([-1.0, 1.0], 5).astype("float32"),
        ]
    )
    inputs = _tiny_inputs()
    expected = ops.convert_to_numpy(model(inputs))
    path = tmp_path / "stcb.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("stcb"), CompactBilinear)
    np.testing.assert_array_equal(ops.convert_to_numpy(loaded(inputs)), expected)
    for w, v in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(ops.convert_to_numpy(w), ops.convert_to_numpy(v))

    # Without set_weights, the seed in the config and the stored weights agree.
    fresh = _tiny_model()
    fresh.save(tmp_path / "fresh.keras")
    reloaded = keras.saving.load_model(tmp_path / "fresh.keras")
    rebuilt = keras.Model.from_config(fresh.get_config())  # config only: hashes from the seed
    ref = ops.convert_to_numpy(fresh(inputs))
    np.testing.assert_array_equal(ops.convert_to_numpy(reloaded(inputs)), ref)
    np.testing.assert_array_equal(ops.convert_to_numpy(rebuilt(inputs)), ref)


@pytest.mark.skipif(BACKEND not in ("tensorflow", "jax"), reason="export needs TF or JAX")
def test_savedmodel_export(tmp_path):
    import tensorflow as tf

    model = _tiny_model(l2_normalize=True)
    inputs = _tiny_inputs()
    expected = ops.convert_to_numpy(model(inputs))
    model.export(str(tmp_path / "exported"), verbose=False)
    reloaded = tf.saved_model.load(str(tmp_path / "exported"))
    served = np.asarray(reloaded.serve({k: tf.constant(v) for k, v in inputs.items()}))
    if BACKEND == "tensorflow":
        np.testing.assert_array_equal(served, expected)
    else:  # jax2tf runs TF's FFT kernels instead of XLA's: equal up to float32 rounding
        np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_float32_under_mixed_precision(policy):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 3, 4)).astype("float32")
    y = rng.standard_normal((2, 1, 1, 4)).astype("float32")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        a, b = keras.Input((3, 3, 4)), keras.Input((1, 1, 4))
        projected = keras.layers.Dense(4, name="proj")(a)  # float16 / bfloat16 output
        layer = CompactBilinear(output_dim=8, seed=2, name="stcb")
        fused = layer([projected, b])
        logits = keras.layers.Dense(3, name="head")(fused)
        model = keras.Model([a, b], [fused, logits])
        assert projected.dtype == policy.split("_")[1]
        assert layer.dtype_policy.name == "float32"
        assert fused.dtype == "float32"
        fused_value, _ = model([x, y])
        assert ops.convert_to_numpy(fused_value).dtype == np.float32
        # The same as the float32 computation on the (low-precision) projected input.
        projected_value = model.get_layer("proj")(x)
        expected = CompactBilinear(output_dim=8, seed=2)([ops.cast(projected_value, "float32"), y])
        np.testing.assert_allclose(
            ops.convert_to_numpy(fused_value), ops.convert_to_numpy(expected), rtol=1e-5, atol=1e-5
        )
        model.compile(optimizer="sgd", loss=[None, "mse"])
        model.fit([x, y], [np.zeros((2, 3, 3, 8)), np.zeros((2, 3, 3, 3))], epochs=1, verbose=0)
    finally:
        keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("normalized", [False, True])
def test_gradients_match_finite_differences(normalized):
    # Autodiff through segment_sum/rfft/irfft (float32) against central differences
    # of the float64 NumPy reference, for every input coordinate.
    rng = np.random.default_rng(7)
    shapes = [(2, 2, 2, 5), (2, 1, 1, 4), (2, 2, 2, 3)]
    inputs = [rng.standard_normal(s).astype("float32") for s in shapes]
    weights = rng.standard_normal((2, 2, 2, 8))
    layer = CompactBilinear(output_dim=8, seed=9, signed_sqrt=normalized, l2_normalize=normalized)
    layer.build(shapes)  # outside the traced gradient function

    def loss(*xs):
        return ops.sum(ops.convert_to_tensor(weights, "float32") * layer(list(xs)))

    grads = _gradients(loss, inputs)
    hashes, signs = _sketch_params(layer)

    def reference_loss(xs):
        z = _outer_product_sketch(xs, hashes, signs, 8)
        if normalized:
            z = np.sign(z) * np.sqrt(np.abs(z))
            z = z / np.linalg.norm(z, axis=-1, keepdims=True)
        return np.sum(weights * z)

    eps = 1e-6
    for i, g in enumerate(grads):
        assert g.shape == shapes[i] and np.all(np.isfinite(g))
        numeric = np.zeros(shapes[i])
        for index in np.ndindex(*shapes[i]):
            xs = [x.astype(np.float64) for x in inputs]
            xs[i][index] += eps
            up = reference_loss(xs)
            xs[i][index] -= 2 * eps
            numeric[index] = (up - reference_loss(xs)) / (2 * eps)
        np.testing.assert_allclose(g, numeric, rtol=1e-3, atol=1e-4)


def test_invalid_arguments():
    for bad in (0, -3, 2.5, True, "8"):
        with pytest.raises(ValueError, match="output_dim"):
            CompactBilinear(output_dim=bad)
    with pytest.raises(ValueError, match="seed"):
        CompactBilinear(output_dim=8, seed=-1)


@pytest.mark.parametrize(
    "shapes, match",
    [
        ((2, 5), "at least 2 tensors"),  # a single tensor's shape
        ([(2, 5)], "at least 2 tensors"),
        ([(2, 3, 5), (2, 4, 5)], "leading dimensions"),
        ([(2, 5), (2, 3, 3, 5)], "same rank"),
        ([(5,), (5,)], "same rank >= 2"),
        ([(2, 5), (2, None)], r"last dimension of inputs\[1\]"),
    ],
)
def test_invalid_input_shapes(shapes, match):
    with pytest.raises(ValueError, match=match):
        CompactBilinear(output_dim=8).build(shapes)
    with pytest.raises(ValueError, match=match):
        CompactBilinear(output_dim=8).compute_output_shape(shapes)


def test_invalid_call_inputs():
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((2, 5)), rng.standard_normal((2, 4))
    with pytest.raises(ValueError, match="inputs"):
        CompactBilinear(output_dim=8)(x)
    with pytest.raises(ValueError, match="inputs"):
        CompactBilinear(output_dim=8)([x])
    layer = CompactBilinear(output_dim=8)
    layer([x, y])
    with pytest.raises(ValueError, match=r"inputs\[1\] with last dimension 4"):
        layer([x, rng.standard_normal((2, 6))])
    with pytest.raises(ValueError, match="2 inputs"):
        layer([x, y, y])


@pytest.mark.parametrize(
    "shapes, expected",
    [
        ([(None, 7, 7, 32), (None, 1, 1, 16)], (None, 7, 7, 64)),
        ([(None, 1, 1, 32), (4, 7, None, 16)], (4, 7, None, 64)),
        ([(3, 32), (None, 16), (1, 8)], (3, 64)),
    ],
)
def test_compute_output_shape(shapes, expected):
    layer = CompactBilinear(output_dim=64)
    assert layer.compute_output_shape(shapes) == expected
    symbolic = layer([keras.KerasTensor(s) for s in shapes])
    assert tuple(symbolic.shape) == expected


def test_all_pairs_of_one_hot_inputs():
    # One-hot inputs pick single entries of the outer product: the output is
    # s_1(a) s_2(b) at bin (h_1(a) + h_2(b)) mod d and zero elsewhere.
    p1, p2, d = 4, 3, 5
    layer = CompactBilinear(output_dim=d, seed=13)
    eye1, eye2 = np.eye(p1, dtype="float32"), np.eye(p2, dtype="float32")
    pairs = list(itertools.product(range(p1), range(p2)))
    x = np.stack([eye1[a] for a, _ in pairs])
    y = np.stack([eye2[b] for _, b in pairs])
    out = ops.convert_to_numpy(layer([x, y]))
    (h1, h2), (s1, s2) = _sketch_params(layer)
    expected = np.zeros((len(pairs), d), "float32")
    for n, (a, b) in enumerate(pairs):
        expected[n, (h1[a] + h2[b]) % d] = s1[a] * s2[b]
    np.testing.assert_allclose(out, expected, atol=1e-6)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute.MirroredStrategy is TF only")
def test_fit_under_mirrored_strategy():
    from conftest import two_cpu_strategy

    strategy = two_cpu_strategy()
    rng = np.random.default_rng(10)
    x = rng.standard_normal((8, 2, 2, 6)).astype("float32")
    y = rng.standard_normal((8, 1, 1, 5)).astype("float32")
    target = rng.standard_normal((8, 2, 2, 3)).astype("float32")
    with strategy.scope():
        a, b = keras.Input((2, 2, 6)), keras.Input((1, 1, 5))
        fused = CompactBilinear(output_dim=8, seed=3, name="stcb")([keras.layers.Dense(6)(a), b])
        model = keras.Model([a, b], keras.layers.Dense(3)(fused))
        model.compile(optimizer="sgd", loss="mse")
    hashes = [ops.convert_to_numpy(h) for h in model.get_layer("stcb").hashes]
    history = model.fit([x, y], target, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # The sketch parameters are constants: training leaves them unchanged.
    for before, after in zip(hashes, model.get_layer("stcb").hashes, strict=True):
        np.testing.assert_array_equal(before, ops.convert_to_numpy(after))
