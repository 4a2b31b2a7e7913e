import keras
import numpy as np
import pytest
from keras.src import testing

from keras_twostream.layers import FoldSegments, ScoreFusion, SegmentConsensus, UnfoldSegments


class SegmentConsensusTest(testing.TestCase):
    def test_layer_contract(self):
        for mode in ("avg", "max"):
            self.run_layer_test(
                SegmentConsensus,
                init_kwargs={"mode": mode},
                input_shape=(2, 3, 5),
                expected_output_shape=(2, 5),
                expected_num_trainable_weights=0,
                expected_num_non_trainable_weights=0,
                supports_masking=False,
            )

    def test_matches_numpy(self):
        x = np.random.RandomState(0).randn(4, 7, 3, 2).astype("float32")
        self.assertAllClose(SegmentConsensus("avg")(x), x.mean(axis=1), atol=1e-6)
        self.assertAllClose(SegmentConsensus("max")(x), x.max(axis=1))
        self.assertAllClose(
            SegmentConsensus("avg", axis=2, keepdims=True)(x),
            x.mean(axis=2, keepdims=True),
            atol=1e-6,
        )

    def test_single_segment_is_identity(self):
        x = np.random.RandomState(1).randn(3, 1, 6).astype("float32")
        self.assertAllClose(SegmentConsensus()(x), x[:, 0])

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="mode"):
            SegmentConsensus(mode="median")
        with pytest.raises(ValueError, match="axis"):
            SegmentConsensus(axis=0)


class FoldSegmentsTest(testing.TestCase):
    def test_fold_unfold_round_trip(self):
        x = np.random.RandomState(0).randn(2, 3, 4, 4, 5).astype("float32")
        folded = FoldSegments()(x)
        self.assertEqual(tuple(folded.shape), (6, 4, 4, 5))
        # Sample b, segment k lands at row b*K + k.
        self.assertAllClose(folded[4], x[1, 1])
        self.assertAllClose(UnfoldSegments(3)(folded), x)

    def test_unfold_contract(self):
        self.run_layer_test(
            UnfoldSegments,
            init_kwargs={"num_segments": 2},
            input_shape=(4, 5),
            expected_output_shape=(2, 2, 5),
            supports_masking=False,
            run_training_check=False,
        )
        with pytest.raises(ValueError, match="num_segments"):
            UnfoldSegments(0)


class ScoreFusionTest(testing.TestCase):
    def test_weighted_average(self):
        rng = np.random.RandomState(0)
        a, b = rng.rand(4, 6).astype("float32"), rng.rand(4, 6).astype("float32")
        self.assertAllClose(ScoreFusion()([a, b]), (a + b) / 2)
        self.assertAllClose(ScoreFusion([5, 1])([a, b]), (5 * a + b) / 6, atol=1e-6)

    def test_probabilities_stay_normalised(self):
        rng = np.random.RandomState(1)
        p = rng.rand(3, 2, 5).astype("float32")  # 3 streams, batch 2
        p /= p.sum(-1, keepdims=True)
        fused = np.asarray(ScoreFusion([2, 3, 1])([p[0], p[1], p[2]]))
        self.assertAllClose(fused.sum(-1), np.ones(2), atol=1e-6)

    def test_set_stream_weights_and_save(self):
        a = keras.Input((3,))
        b = keras.Input((3,))
        fusion = ScoreFusion(name="fuse")
        model = keras.Model([a, b], fusion([a, b]))
        fusion.set_stream_weights([1, 5])
        x = [np.eye(3, dtype="float32"), np.ones((3, 3), "float32") / 3]
        expected = (x[0] + 5 * x[1]) / 6
        self.assertAllClose(model.predict(x, verbose=0), expected, atol=1e-6)
        path = self.get_temp_dir() + "/fusion.keras"
        model.save(path)
        reloaded = keras.saving.load_model(path)
        self.assertAllClose(reloaded.predict(x, verbose=0), expected, atol=1e-6)

    def test_bad_weights(self):
        with pytest.raises(ValueError, match="stream_weights"):
            ScoreFusion([-1, 2])
        with pytest.raises(ValueError, match="stream_weights"):
            ScoreFusion([0, 0])
        with pytest.raises(ValueError, match="Expected 3 stream_weights"):
            ScoreFusion([1, 1])([np.ones((1, 2)), np.ones((1, 2)), np.ones((1, 2))])
