"""TCLSTA layers against NumPy references on fixed weights (Peng et al. 2018, Eqs. 1-9 and 14)."""

import keras
import numpy as np
import pytest
from keras.src import testing

from keras_twostream.layers.class_activation_attention import ClassActivationAttention
from keras_twostream.layers.class_wise_fusion import ClassWiseFusion
from keras_twostream.layers.collaborative_learning import CollaborativeLearning
from keras_twostream.layers.temporal_attention import TemporalAttention
from keras_twostream.layers.weighted_average_pooling import WeightedAveragePooling2D


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def randomize(layer, seed, scale=0.5):
    rng = np.random.RandomState(seed)
    weights = [scale * rng.randn(*w.shape).astype("float32") for w in layer.get_weights()]
    layer.set_weights(weights)
    return weights


# --- Spatial-level attention (Eqs. 1-3) ---------------------------------------------------------


def conv3x3_same_relu(x, kernel, bias):
    """NumPy 3x3 'same' convolution (cross-correlation, as Keras) + bias + ReLU."""
    b, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((b, h, w, kernel.shape[-1]), "float64")
    for dy in range(3):
        for dx in range(3):
            out += padded[:, dy : dy + h, dx : dx + w, :] @ kernel[dy, dx]
    return np.maximum(out + bias, 0.0)


def cam_reference(x, conv_kernel, conv_bias, dense_kernel, dense_bias, mode):
    a = conv3x3_same_relu(x.astype("float64"), conv_kernel, conv_bias)  # a_k(x, y)
    logits = a.mean(axis=(1, 2)) @ dense_kernel + dense_bias  # GAP + softmax input
    if mode == "predicted":
        choice = np.eye(dense_kernel.shape[1])[logits.argmax(-1)]
    else:
        choice = softmax(logits)
    maps = np.einsum("bxyk,kc,bc->bxy", a, dense_kernel, choice)  # Eq. (2)
    b, h, w = maps.shape
    g = h * w
    attention = g * softmax(maps.reshape(b, g)).reshape(b, h, w)  # Eq. (3)
    return logits, attention, maps


class ClassActivationAttentionTest(testing.TestCase):
    def test_layer_contract(self):
        self.run_layer_test(
            ClassActivationAttention,
            init_kwargs={"num_classes": 3, "filters": 4},
            input_shape=(2, 4, 5, 6),
            expected_output_shape=((2, 3), (2, 4, 5)),
            expected_num_trainable_weights=4,
            expected_num_non_trainable_weights=0,
            supports_masking=False,
        )

    def test_matches_numpy_and_map_sums_to_g(self):
        x = np.random.RandomState(0).rand(3, 4, 5, 6).astype("float32")
        for mode in ("predicted", "expected"):
            layer = ClassActivationAttention(num_classes=4, filters=7, attention_class=mode)
            layer.build(x.shape)
            conv_kernel, conv_bias, dense_kernel, dense_bias = randomize(layer, seed=1)
            logits, attention = layer(x)
            ref_logits, ref_attention, maps = cam_reference(
                x, conv_kernel, conv_bias, dense_kernel, dense_bias, mode
            )
            self.assertAllClose(logits, ref_logits, atol=1e-5)
            self.assertAllClose(attention, ref_attention, atol=1e-4)
            attention = np.asarray(attention)
            # Eq. (3): the map sums to g = 4 * 5 locations and orders locations like m_c.
            self.assertAllClose(attention.sum(axis=(1, 2)), np.full(3, 20.0), atol=1e-4)
            assert np.all(attention > 0)
            for b in range(3):
                np.testing.assert_array_equal(
                    np.argsort(attention[b].ravel()), np.argsort(maps[b].ravel())
                )
            assert not np.allclose(attention, 1.0)  # the random weights give a non-uniform map

    def test_predicted_class_selects_the_argmax_class_map(self):
        """With a classifier that always prefers class 2, the map is m_2 (Eq. 2)."""
        x = np.random.RandomState(2).rand(2, 3, 3, 5).astype("float32")
        layer = ClassActivationAttention(num_classes=3, filters=4)
        layer.build(x.shape)
        conv_kernel, conv_bias, dense_kernel, _ = randomize(layer, seed=3)
        dense_bias = np.array([0.0, 0.0, 100.0], "float32")
        layer.set_weights([conv_kernel, conv_bias, dense_kernel, dense_bias])
        logits, attention = layer(x)
        assert np.all(np.asarray(logits).argmax(-1) == 2)
        a = conv3x3_same_relu(x, conv_kernel, conv_bias)
        m2 = a @ dense_kernel[:, 2]
        expected = 9 * softmax(m2.reshape(2, 9)).reshape(2, 3, 3)
        self.assertAllClose(attention, expected, atol=1e-4)

    def test_a_single_location_gets_weight_one(self):
        _, attention = ClassActivationAttention(num_classes=2, filters=3)(
            np.ones((2, 1, 1, 4), "float32")
        )
        self.assertAllClose(attention, np.ones((2, 1, 1)))

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="num_classes"):
            ClassActivationAttention(num_classes=0)
        with pytest.raises(ValueError, match="attention_class"):
            ClassActivationAttention(num_classes=3, attention_class="label")
        with pytest.raises(ValueError, match=r"\(batch, height, width, channels\)"):
            ClassActivationAttention(num_classes=3)(np.zeros((2, 4, 6), "float32"))


class WeightedAveragePooling2DTest(testing.TestCase):
    def test_matches_numpy(self):
        rng = np.random.RandomState(0)
        features = rng.rand(2, 3, 4, 5).astype("float32")
        weights = rng.rand(2, 3, 4).astype("float32")
        pooled = WeightedAveragePooling2D()([features, weights])
        expected = (features * weights[..., None]).sum(axis=(1, 2)) / 12
        self.assertAllClose(pooled, expected, atol=1e-6)
        # A uniform map is global average pooling.
        self.assertAllClose(
            WeightedAveragePooling2D()([features, np.ones((2, 3, 4), "float32")]),
            features.mean(axis=(1, 2)),
            atol=1e-6,
        )

    def test_layer_contract(self):
        self.run_layer_test(
            WeightedAveragePooling2D,
            init_kwargs={},
            input_shape=[(2, 3, 4, 5), (2, 3, 4)],
            expected_output_shape=(2, 5),
            expected_num_trainable_weights=0,
            supports_masking=False,
            run_training_check=False,
        )
        with pytest.raises(ValueError, match="weights"):
            WeightedAveragePooling2D()(
                [np.zeros((2, 3, 4, 5), "float32"), np.zeros((2, 3, 4, 1), "float32")]
            )


# --- Temporal-level attention (Eqs. 4-6) --------------------------------------------------------


def lstm_reference(x, kernel, recurrent_kernel, bias):
    """Keras LSTM (gates i, f, c, o; tanh / sigmoid) in NumPy: hidden states (B, T, n)."""
    b, t, _ = x.shape
    n = recurrent_kernel.shape[0]
    h, c = np.zeros((b, n)), np.zeros((b, n))
    states = []
    for step in range(t):
        z = x[:, step] @ kernel + h @ recurrent_kernel + bias
        i, f, g, o = (
            sigmoid(z[:, :n]),
            sigmoid(z[:, n : 2 * n]),
            np.tanh(z[:, 2 * n : 3 * n]),
            sigmoid(z[:, 3 * n :]),
        )
        c = f * c + i * g
        h = o * np.tanh(c)
        states.append(h)
    return np.stack(states, axis=1)


def temporal_attention_reference(alpha, hidden_states):
    """Eqs. (4)-(6) with the paper's column convention: H is n x T."""
    out_beta, out_weights = [], []
    for sample_alpha, sample_h in zip(alpha, hidden_states, strict=True):
        H = sample_h.T  # n x T
        C = np.tanh(H.T @ H)  # Eq. (4)
        gamma = np.ones(C.shape[0]) @ C  # Eq. (5): 1^T C
        w = np.exp(gamma) / np.exp(gamma).sum()
        out_beta.append(sample_alpha * w[:, None])  # Eq. (6)
        out_weights.append(w)
    return np.stack(out_beta), np.stack(out_weights)


class TemporalAttentionTest(testing.TestCase):
    def test_layer_contract(self):
        self.run_layer_test(
            TemporalAttention,
            init_kwargs={"units": 4},
            input_shape=(2, 3, 5),
            expected_output_shape=((2, 3, 5), (2, 3, 4), (2, 3)),
            expected_num_trainable_weights=3,
            expected_num_non_trainable_weights=0,
            supports_masking=False,
        )

    def test_matches_numpy(self):
        alpha = np.random.RandomState(0).randn(3, 6, 5).astype("float32")
        layer = TemporalAttention(units=4)
        layer.build(alpha.shape)
        kernel, recurrent_kernel, bias = randomize(layer, seed=1, scale=1.0)
        attended, hidden, weights = layer(alpha)
        unrolled = TemporalAttention(units=4, unroll=True)
        unrolled.build(alpha.shape)
        unrolled.set_weights([kernel, recurrent_kernel, bias])
        for a, b in zip(unrolled(alpha), (attended, hidden, weights), strict=True):
            self.assertAllClose(a, b, atol=1e-6)
        ref_hidden = lstm_reference(alpha.astype("float64"), kernel, recurrent_kernel, bias)
        self.assertAllClose(hidden, ref_hidden, atol=1e-5)
        ref_beta, ref_weights = temporal_attention_reference(alpha.astype("float64"), ref_hidden)
        self.assertAllClose(weights, ref_weights, atol=1e-5)
        self.assertAllClose(attended, ref_beta, atol=1e-5)
        weights = np.asarray(weights)
        self.assertAllClose(weights.sum(-1), np.ones(3), atol=1e-6)
        assert weights.std(axis=-1).min() > 1e-3  # random weights attend unevenly

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="units"):
            TemporalAttention(units=0)
        with pytest.raises(ValueError, match="unroll"):
            TemporalAttention(units=2, unroll="yes")
        with pytest.raises(ValueError, match=r"\(batch, T, channels\)"):
            TemporalAttention(units=2)(np.zeros((2, 3), "float32"))


# --- Collaborative learning (Eqs. 7-9, Algorithm 1) ---------------------------------------------


def collaborative_reference(vs_rows, vm_rows, weights, alternations):
    """Algorithm 1 for one video, with the paper's matrices: V is d x N, W_m is k x d."""
    Ws, Wm, Wos, Wom, whs, whm = (w.astype("float64") for w in weights)
    Ws, Wm, Wos, Wom = Ws.T, Wm.T, Wos.T, Wom.T  # stored transposed for row vectors
    Vs, Vm = vs_rows.T, vm_rows.T
    zs = np.full(Vs.shape[1], 1.0 / Vs.shape[1])  # step 1
    for _ in range(alternations):
        Os = Vs @ zs  # step 3
        H = np.tanh(Wm @ Vm + np.outer(Wos @ Os, np.ones(Vm.shape[1])))  # Eq. (7)
        zm = softmax(whm[:, 0] @ H)  # Eq. (8)
        Om = Vm @ zm  # Eq. (9)
        H = np.tanh(Ws @ Vs + np.outer(Wom @ Om, np.ones(Vs.shape[1])))  # step 6
        zs = softmax(whs[:, 0] @ H)
    return Vs @ zs, Vm @ zm, zs, zm  # step 8


class CollaborativeLearningTest(testing.TestCase):
    def test_layer_contract(self):
        self.run_layer_test(
            CollaborativeLearning,
            init_kwargs={"units": 4, "num_alternations": 2},
            input_shape=[(2, 3, 5), (2, 4, 6)],
            expected_output_shape=((2, 5), (2, 6)),
            expected_num_trainable_weights=6,
            expected_num_non_trainable_weights=0,
            supports_masking=False,
            run_training_check=False,  # two inputs; trained below
        )

    def test_one_fit_step_trains_all_six_matrices(self):
        static_in, motion_in = keras.Input((3, 5)), keras.Input((4, 6))
        layer = CollaborativeLearning(units=4)
        static, motion = layer([static_in, motion_in])
        score = keras.layers.Dense(1)(keras.layers.Concatenate()([static, motion]))
        model = keras.Model([static_in, motion_in], score)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        before = [w.copy() for w in layer.get_weights()]
        rng = np.random.RandomState(0)
        x = [rng.randn(4, 3, 5).astype("float32"), rng.randn(4, 4, 6).astype("float32")]
        model.fit(x, rng.randn(4, 1).astype("float32"), epochs=1, batch_size=4, verbose=0)
        for name, old, new in zip(
            [w.name for w in layer.weights], before, layer.get_weights(), strict=True
        ):
            assert not np.allclose(old, new), name

    def test_matches_numpy(self):
        rng = np.random.RandomState(0)
        static = rng.randn(3, 5, 6).astype("float32")
        motion = rng.randn(3, 4, 7).astype("float32")  # another count and width per modality
        for alternations in (1, 3):
            layer = CollaborativeLearning(units=8, num_alternations=alternations)
            layer.build([static.shape, motion.shape])
            weights = randomize(layer, seed=alternations, scale=0.7)
            vs_f, vm_f, zs, zm = (
                np.asarray(o) for o in layer([static, motion], return_coefficients=True)
            )
            for b in range(3):
                ref = collaborative_reference(
                    static[b].astype("float64"), motion[b].astype("float64"), weights, alternations
                )
                for got, want in zip((vs_f[b], vm_f[b], zs[b], zm[b]), ref, strict=True):
                    self.assertAllClose(got, want, atol=1e-5)
            self.assertAllClose(zs.sum(-1), np.ones(3), atol=1e-6)
            self.assertAllClose(zm.sum(-1), np.ones(3), atol=1e-6)
            assert zs.std(-1).min() > 1e-3 and zm.std(-1).min() > 1e-3

    def test_each_modality_is_guided_by_the_other(self):
        """z^m depends on the static features and z^s on the motion features (mutual guidance)."""
        rng = np.random.RandomState(1)
        static, motion = rng.randn(2, 5, 6).astype("float32"), rng.randn(2, 5, 7).astype("float32")
        layer = CollaborativeLearning(units=8)
        layer.build([static.shape, motion.shape])
        randomize(layer, seed=4, scale=0.7)
        _, _, zs, zm = layer([static, motion], return_coefficients=True)
        _, _, zs_other_static, zm_other_static = layer(
            [static[::-1], motion], return_coefficients=True
        )
        _, _, zs_other_motion, _ = layer([static, motion[::-1]], return_coefficients=True)
        assert not np.allclose(zm, zm_other_static, atol=1e-4)
        assert not np.allclose(zs, zs_other_motion, atol=1e-4)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="num_alternations"):
            CollaborativeLearning(num_alternations=0)
        with pytest.raises(ValueError, match="static"):
            CollaborativeLearning(units=2)(np.zeros((2, 3, 4), "float32"))


# --- Class-wise late fusion (Eq. 14) -------------------------------------------------------------


class ClassWiseFusionTest(testing.TestCase):
    def test_averages_until_weights_are_set_then_follows_eq14(self):
        rng = np.random.RandomState(0)
        a, b = (
            softmax(rng.randn(6, 4)).astype("float32"),
            softmax(rng.randn(6, 4)).astype("float32"),
        )
        layer = ClassWiseFusion()
        self.assertAllClose(layer([a, b]), (a + b) / 2, atol=1e-6)
        weights = rng.rand(4, 2).astype("float32")
        weights /= weights.sum(1, keepdims=True)
        layer.set_class_weights(weights)
        raw = a * weights[:, 0] + b * weights[:, 1]  # W_j S_t J_j for every j
        self.assertAllClose(layer([a, b]), raw, atol=1e-6)

    def test_view_average_is_eq14_on_the_video_scores(self):
        # The test protocol averages a model's outputs over a video's views; Eq. (14) scores the
        # video's averaged softmax scores S_t. The layer must commute with that average, so the
        # video's decision is Eq. (14)'s in every trial (a per-view renormalisation changed it in
        # 293 of these 2000 trials).
        rng = np.random.RandomState(1)
        trials, views, classes = 2000, 5, 4
        weights = rng.rand(classes, 2).astype("float32")
        weights /= weights.sum(1, keepdims=True)
        layer = ClassWiseFusion()
        layer.build([(None, classes), (None, classes)])
        layer.set_class_weights(weights)
        a = softmax(3 * rng.randn(trials * views, classes)).astype("float32")
        b = softmax(3 * rng.randn(trials * views, classes)).astype("float32")
        per_view = np.asarray(layer([a, b])).reshape(trials, views, classes)
        video_a = a.reshape(trials, views, classes).mean(1)
        video_b = b.reshape(trials, views, classes).mean(1)
        eq14 = video_a * weights[:, 0] + video_b * weights[:, 1]  # W_j S_t J_j
        self.assertAllClose(per_view.mean(1), eq14, atol=1e-6)
        np.testing.assert_array_equal(per_view.mean(1).argmax(-1), eq14.argmax(-1))

    def test_layer_contract_and_errors(self):
        self.run_layer_test(
            ClassWiseFusion,
            init_kwargs={},
            input_shape=[(2, 3), (2, 3)],
            expected_output_shape=(2, 3),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=1,
            supports_masking=False,
            run_training_check=False,
        )
        layer = ClassWiseFusion()
        layer.build([(None, 3), (None, 3)])
        with pytest.raises(ValueError, match=r"shape \(3, 2\)"):
            layer.set_class_weights(np.ones((2, 3)))
        with pytest.raises(ValueError, match="non-negative"):
            layer.set_class_weights(-np.ones((3, 2)))
        with pytest.raises(ValueError, match="all-zero rows"):
            layer.set_class_weights([[1, 0], [0, 0], [0, 1]])
        with pytest.raises(ValueError, match="same known number of classes"):
            ClassWiseFusion()([np.zeros((2, 3), "float32"), np.zeros((2, 4), "float32")])
