"""The RGB-only two-stream network with MPA and SAL: Eq. (2) against NumPy, the Table 3 switches,
the phases of Algorithm 1 bit for bit, MirroredStrategy against one device, save and export."""

import keras
import numpy as np
import pytest

from keras_twostream.layers import PyramidAttention, SemanticDiscriminator
from keras_twostream.models.mpa_sal import ABLATIONS, MPASAL, build_mpa_sal
from keras_twostream.models.semantic_autoencoder import SemanticAutoencoder, train_semantic_encoder
from keras_twostream.training.adversarial import clip_by_global_norm

BACKEND = keras.backend.backend()
TF_ONLY = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="the SAL train step runs on TensorFlow"
)
SIZE, K, D, CLASSES, DIM, BATCH = 32, 2, 2, 3, 8, 4


def make_kwargs(**kwargs):
    return {
        "backbone": "tiny",
        "image_size": SIZE,
        "num_segments": K,
        "diff_length": D,
        "semantic_dim": DIM,
        "discriminator_units": (8,),
        "mpa_scales": (1, 2),
        "dropout": 0.0,
        "semantic_encoder": None,
        **kwargs,
    }


def make_model(**kwargs):
    kwargs = make_kwargs(**kwargs)
    kwargs.setdefault("streams", ("spatial",))
    return build_mpa_sal(CLASSES, **kwargs)


def make_data(streams=("spatial",), n=BATCH, seed=0):
    rng = np.random.RandomState(seed)
    x = {}
    if "spatial" in streams:
        x["rgb"] = rng.rand(n, K, SIZE, SIZE, 3).astype("float32")
    if "temporal" in streams:
        x["rgb_diff"] = rng.randn(n, K, SIZE, SIZE, 3 * D).astype("float32")
    return x, rng.randint(0, CLASSES, n)


def values(variables):
    """Every replica's copy of every variable, as NumPy (one copy outside tf.distribute)."""
    out = []
    for v in variables:
        value = v.value
        components = getattr(value, "values", None)
        if components is not None and not callable(components):
            out.append([keras.ops.convert_to_numpy(c) for c in components])
        else:
            out.append([keras.ops.convert_to_numpy(value)])
    return out


def moved(before, after):
    """Per variable: did any replica's copy change?"""
    return [
        any(not np.array_equal(a, b) for a, b in zip(x, y, strict=True))
        for x, y in zip(before, after, strict=True)
    ]


def network_variables(model):
    """G and C of every stream, with the batch-normalisation statistics."""
    seen, out = set(), []
    for stream in model.streams:
        for layer in model.stream_layers(stream):
            for v in layer.variables:
                if id(v) not in seen:
                    seen.add(id(v))
                    out.append(v)
    return out


def test_representation_is_eq2_with_level_weights_that_sum_to_one():
    """V̄ = sum_i alpha_i tanh(P_i G(pool(level_i))), alpha = softmax(a), against NumPy; C on V̄."""
    model = make_model(use_sal=False, consensus="avg")
    layer = model.get_layer("spatial_level_weights")
    logits = np.array([0.5, -1.0, 2.0, 0.0], "float32")
    layer.level_logits.assign(logits)
    alpha = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(model.level_weights("spatial"), alpha, rtol=1e-6)
    assert model.level_weights("spatial").sum() == pytest.approx(1.0, abs=1e-6)

    x, _ = make_data(n=3)
    pools = keras.Model(
        model.input, [model.get_layer(f"spatial_level{i}_pool").output for i in range(1, 5)]
    )
    per_frame = [np.asarray(p, np.float64) for p in pools(x)]  # [B*K, D_i]
    expected = 0.0
    for i, frames in enumerate(per_frame, start=1):
        consensus = frames.reshape(3, K, -1).mean(axis=1)  # G = average over the K segments
        kernel, bias = model.get_layer(f"spatial_level{i}_projection").get_weights()
        expected = expected + alpha[i - 1] * np.tanh(consensus @ kernel + bias)
    representation = np.asarray(model.representations(x)["spatial"])
    np.testing.assert_allclose(representation, expected, rtol=1e-4, atol=1e-5)
    assert np.abs(representation).max() < 1.0  # the range of the tanh code S

    kernel, bias = model.get_layer("spatial_classifier").get_weights()
    logits = expected @ kernel + bias
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(
        np.asarray(model(x)["spatial"]), probs / probs.sum(-1, keepdims=True), atol=1e-5
    )


def test_max_consensus_and_the_segments_share_the_network():
    model = make_model(use_mpa=False, use_sal=False, consensus="max")
    x, _ = make_data(n=2)
    pool = keras.Model(model.input, model.get_layer("spatial_level1_pool").output)
    frames = np.asarray(pool(x)).reshape(2, K, -1)
    # The same frame in another segment position gives the same per-frame features.
    swapped = {"rgb": x["rgb"][:, ::-1]}
    np.testing.assert_allclose(
        np.asarray(pool(swapped)).reshape(2, K, -1)[:, ::-1], frames, atol=1e-5
    )
    kernel, bias = model.get_layer("spatial_classifier").get_weights()
    logits = frames.max(axis=1) @ kernel + bias  # baseline: C on G(pool(res5)), G = max
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(
        np.asarray(model(x)["spatial"]), probs / probs.sum(-1, keepdims=True), atol=1e-5
    )


def test_ablations_switch_the_components_of_table3():
    # Table 3 as printed: (method, network) per row; every row is the Spatial Network.
    table3 = {"baseline": ("Baseline", "Spatial"), "mpa": ("MPA", "Spatial"),
              "mpa_sal": ("MPA + SAL", "Spatial")}  # fmt: skip
    assert set(ABLATIONS) == set(table3)
    built = {key: build_mpa_sal(CLASSES, **{**make_kwargs(), **ABLATIONS[key]}) for key in table3}
    for key, (method, network) in table3.items():
        assert built[key].streams == (network.lower(),), key
        assert (built[key].use_mpa, built[key].use_sal) == ("MPA" in method, "SAL" in method), key

    def count(model, cls):
        return sum(isinstance(layer, cls) for layer in model.layers)

    baseline, mpa, mpa_sal = built["baseline"], built["mpa"], built["mpa_sal"]
    # Baseline (TSN): no attention, no levels, the classifier on the last stage's 64 channels.
    assert count(baseline, PyramidAttention) == 0 and not baseline.discriminators
    assert baseline.get_layer("spatial_classifier").kernel.shape == (64, CLASSES)
    assert baseline.representations(make_data(n=1)[0]) == {}
    # +MPA: an MPA after each of the four stages, V̄ of semantic_dim, no adversary.
    assert [layer.name for layer in mpa.layers if isinstance(layer, PyramidAttention)] == [
        "spatial_mpa_res2",
        "spatial_mpa_res3",
        "spatial_mpa_res4",
        "spatial_mpa_res5",
    ]
    assert mpa.get_layer("spatial_classifier").kernel.shape == (DIM, CLASSES)
    assert not mpa.discriminators and mpa.semantic_encoder is None
    assert mpa.train_phases == ("generator",)
    with pytest.raises(ValueError, match="use_sal"):
        mpa.set_train_phases("discriminator")
    # +MPA+SAL: a discriminator and the frozen encoder, outside the inference graph.
    assert count(mpa_sal, PyramidAttention) == 4
    assert isinstance(mpa_sal.discriminators["spatial"], SemanticDiscriminator)
    assert not mpa_sal.semantic_encoder.trainable and not mpa_sal.semantic_encoder.trainable_weights
    assert mpa_sal.train_phases == ("discriminator", "generator")
    d_ids = {id(v) for v in mpa_sal.discriminator_variables("spatial")}
    assert d_ids.isdisjoint(id(v) for v in mpa_sal.generator_variables("spatial"))
    assert d_ids.isdisjoint(id(v) for layer in mpa_sal.layers for v in layer.weights)
    # The inference path is the same network with and without SAL.
    assert mpa.count_params() == mpa_sal.inference_model().count_params()
    # rebuild() (e.g. one segment per view at test time) keeps every weight, D and encoder included.
    single = mpa_sal.rebuild(num_segments=1)
    assert single.num_segments == 1
    for a, b in zip(mpa_sal.get_weights(), single.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_trained_encoder_is_copied_and_frozen():
    encoder = train_semantic_encoder(CLASSES, DIM, epochs=60, seed=2)
    model = make_model(semantic_encoder=encoder)
    for a, b in zip(encoder.get_weights(), model.semantic_encoder.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    labels = np.array([2, 0])
    np.testing.assert_allclose(
        np.asarray(model.semantics(labels)),
        np.asarray(encoder(np.eye(CLASSES, dtype="float32")[labels])),
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="semantic_encoder"):
        make_model(semantic_encoder=SemanticAutoencoder(CLASSES, DIM + 1).encoder)  # wrong size
    with pytest.raises(ValueError, match="semantic_encoder"):
        make_model(semantic_encoder="pretrained")


def test_building_trains_nothing_and_build_mpa_sal_trains_the_encoder():
    # MPASAL's constructor trains nothing: the one-call training is build_mpa_sal's.
    with pytest.raises(ValueError, match="build_mpa_sal"):
        MPASAL(CLASSES, backbone="tiny", image_size=SIZE, semantic_encoder="train")
    model = make_model(semantic_encoder="train")
    reference = train_semantic_encoder(CLASSES, DIM, seed=0)
    for a, b in zip(reference.get_weights(), model.semantic_encoder.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_arguments_name_what_was_expected():
    for kwargs, match in (
        (dict(streams=("audio",)), "streams"),
        (dict(num_segments=0), "num_segments"),
        (dict(use_mpa="yes"), "use_mpa"),
        (dict(dropout=1.0), "dropout"),
        (dict(dropout=(0.5, 0.5, 0.5)), "dropout"),
        (dict(adversarial_weight=-1.0), "adversarial_weight"),
        (dict(consensus="median"), "consensus"),
    ):
        with pytest.raises(ValueError, match=match):
            make_model(**kwargs)
    with pytest.raises(ValueError, match="num_classes"):
        build_mpa_sal(1, backbone="tiny", image_size=SIZE)
    model = make_model()
    with pytest.raises(ValueError, match="'rgb'"):
        model({"flow": np.zeros((1, K, SIZE, SIZE, 3), "float32")})
    with pytest.raises(ValueError, match="phases"):
        model.set_train_phases("critic")
    with pytest.raises(ValueError, match="gradient_clip_norm"):
        model.compile(gradient_clip_norm=-1.0)
    with pytest.raises(ValueError, match="gradient_clip_norm"):
        model.compile(optimizer=keras.optimizers.SGD(1e-3, global_clipnorm=20.0))


def test_clip_by_global_norm_matches_numpy():
    rng = np.random.RandomState(0)
    grads = [rng.randn(3, 4).astype("float32"), None, rng.randn(5).astype("float32")]
    norm = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads if g is not None))
    clipped, got = clip_by_global_norm(grads, 0.5)
    assert float(got) == pytest.approx(norm, rel=1e-6) and clipped[1] is None
    for g, c in zip(grads, clipped, strict=True):
        if g is not None:
            np.testing.assert_allclose(np.asarray(c), g * 0.5 / norm, rtol=1e-5)
    unchanged, _ = clip_by_global_norm(grads, 2 * norm)
    np.testing.assert_allclose(np.asarray(unchanged[0]), grads[0], rtol=1e-6)


@TF_ONLY
def test_each_phase_updates_only_its_part_bit_for_bit():
    """Algorithm 1: the D step changes D only (the network, its BN statistics and the encoder
    stay bit for bit), the G step changes G and C only; the encoder never changes."""
    model = make_model()
    clip = 1e-3
    model.compile(
        optimizer=keras.optimizers.SGD(1.0),  # no momentum: the update is the clipped gradient
        discriminator_optimizer=keras.optimizers.Adam(1e-2),
        gradient_clip_norm=clip,
    )
    x, y = make_data()
    network, discriminator = network_variables(model), model.discriminator_variables("spatial")
    encoder = model.semantic_encoder.weights
    generator = model.generator_variables("spatial")
    g_slots = model.generator_optimizers["spatial"].variables
    d_slots = model.discriminator_optimizers["spatial"].variables

    def state():
        return {
            name: values(vs)
            for name, vs in (
                ("network", network),
                ("d", discriminator),
                ("encoder", encoder),
                ("generator", generator),
                ("g_slots", g_slots),
                ("d_slots", d_slots),
            )
        }

    s0 = state()
    model.set_train_phases("discriminator")
    logs = model.train_on_batch(x, y, return_dict=True)
    s1 = state()
    assert not any(moved(s0["network"], s1["network"]))
    assert not any(moved(s0["encoder"], s1["encoder"]))
    assert not any(moved(s0["g_slots"], s1["g_slots"]))
    assert all(moved(s0["d"], s1["d"]))
    assert 0.0 <= logs["spatial_d_real_accuracy"] <= 1.0 and np.isfinite(logs["spatial_d_loss"])

    model.set_train_phases("generator")
    model.train_on_batch(x, y)
    s2 = state()
    assert not any(moved(s1["d"], s2["d"])) and not any(moved(s1["d_slots"], s2["d_slots"]))
    assert not any(moved(s1["encoder"], s2["encoder"]))
    changed = moved(s1["network"], s2["network"])
    frozen = [v.path for v, c in zip(network, changed, strict=True) if not c]
    assert not frozen, frozen  # every weight and BN statistic of G and C moved
    # The update is the gradient clipped to the global norm `clip` (SGD, learning rate 1).
    delta = [b[0] - a[0] for a, b in zip(s1["generator"], s2["generator"], strict=True)]
    assert np.sqrt(sum((d.astype(np.float64) ** 2).sum() for d in delta)) == pytest.approx(
        clip, rel=1e-3
    )


@TF_ONLY
def test_fit_runs_algorithm1_with_finite_losses_and_a_frozen_encoder():
    model = make_model(streams=("temporal",), dropout=0.5)
    model.compile(steps_per_epoch=2)
    assert model.gradient_clip_norms == {"temporal": 40.0}  # the paper's temporal clipping
    encoder = values(model.semantic_encoder.weights)
    discriminator = values(model.discriminator_variables("temporal"))
    x, y = make_data(("temporal",), n=2 * BATCH)
    history = model.fit(x, y, batch_size=BATCH, epochs=3, verbose=0)
    keys = {
        "loss",
        "classification_loss",
        "accuracy",
        "temporal_d_loss",
        "temporal_g_adv_loss",
        "temporal_d_real_accuracy",
        "temporal_d_fake_accuracy",
    }
    assert keys <= set(history.history)
    for key in keys:
        assert np.all(np.isfinite(history.history[key])), key
    # loss = L_cls + L_adv (Eq. 5, lambda = 1), both averaged over the epoch's batches.
    np.testing.assert_allclose(
        history.history["loss"],
        np.add(history.history["classification_loss"], history.history["temporal_g_adv_loss"]),
        rtol=1e-5,
    )
    assert not any(moved(encoder, values(model.semantic_encoder.weights)))
    assert all(moved(discriminator, values(model.discriminator_variables("temporal"))))
    assert model.generator_optimizers["temporal"].iterations.numpy() == 6
    assert model.discriminator_optimizers["temporal"].iterations.numpy() == 6
    # The step decay: 1e-3 for 40 epochs of 2 steps, then 1e-4.
    config = model.generator_optimizers["temporal"].get_config()
    schedule = keras.optimizers.schedules.deserialize(config["learning_rate"])
    assert config["momentum"] == 0.9
    assert float(schedule(79)) == pytest.approx(1e-3) and float(schedule(80)) == pytest.approx(1e-4)


@TF_ONLY
def test_two_replicas_match_one_device():
    """MirroredStrategy over two CPU devices: after one epoch the weights (network, D, optimizer
    slots) and every logged metric equal the single-device run on the same global batches. The
    clipping is active (1e-2), so clipping per replica instead of after the sum would differ.
    The backbone is frozen (its batch normalisation then uses its moving statistics, the same on
    every replica, and tracing the distributed step is 4x faster); the MPA layers, projections,
    level weights and classifier train."""
    import tensorflow as tf
    from conftest import two_cpu_strategy

    def build(**kwargs):
        model = make_model(**kwargs)
        for layer in model.layers:
            if layer.name.startswith("spatial_backbone"):
                layer.trainable = False
        model.compile(
            optimizer=keras.optimizers.SGD(0.5, momentum=0.9),
            discriminator_optimizer=keras.optimizers.Adam(1e-2),
            gradient_clip_norm=1e-2,
            jit_compile=False,
        )
        return model

    single = build()
    strategy = two_cpu_strategy()
    with strategy.scope():
        # Training the semantic autoencoder inside the scope works (K=3 labels, 2 replicas).
        mirrored = build(semantic_encoder="train")
    initial = single.get_weights()
    mirrored.set_weights(initial)
    assert any(
        isinstance(layer, PyramidAttention) and layer.trainable_weights for layer in mirrored.layers
    )
    x, y = make_data(n=2 * BATCH, seed=1)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)  # 2 samples per replica
    h1 = single.fit(dataset, epochs=1, verbose=0).history
    h2 = mirrored.fit(dataset, epochs=1, verbose=0).history
    assert sorted(h1) == sorted(h2)
    for key in h1:
        np.testing.assert_allclose(h2[key], h1[key], rtol=1e-5, atol=1e-7, err_msg=key)
    assert all(
        len(v) == 2 for v in values(mirrored.discriminator_variables("spatial"))
    )  # 2 replicas
    # Compare the updates (not the weights, which the small clipped updates barely move).
    updates = [np.asarray(w) - w0 for w, w0 in zip(single.weights, initial, strict=True)]
    assert any(np.abs(u).max() > 0 for u in updates)
    for w, w0, update in zip(mirrored.weights, initial, updates, strict=True):
        for replica in values([w])[0]:
            atol = 1e-3 * np.abs(update).max() + 1e-12
            np.testing.assert_allclose(replica - w0, update, rtol=0, atol=atol, err_msg=w.path)
    for attribute in ("generator_optimizers", "discriminator_optimizers"):
        a, b = getattr(single, attribute)["spatial"], getattr(mirrored, attribute)["spatial"]
        for va, vb in zip(a.variables, b.variables, strict=True):
            np.testing.assert_allclose(values([vb])[0][0], np.asarray(va), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("streams", [("spatial",), ("temporal",), ("spatial", "temporal")])
def test_variants_fit_round_trip_and_export_the_inference_path(streams, tmp_path):
    model = make_model(streams=streams)
    streams = model.streams
    x, y = make_data(streams)
    if BACKEND == "tensorflow":
        model.compile(run_eagerly=True)  # the traced step is tested above; this saves tracing
        history = model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
    else:
        model.compile()
        with pytest.raises(NotImplementedError, match="TensorFlow"):
            model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    out = model.predict(x, verbose=0)
    assert sorted(out) == sorted([*streams, "fused"] if len(streams) == 2 else streams)
    for value in out.values():
        np.testing.assert_allclose(value.sum(-1), 1.0, atol=1e-5)

    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded) is MPASAL and reloaded.streams == streams
    again = reloaded.predict(x, verbose=0)
    for key in out:
        np.testing.assert_allclose(again[key], out[key], atol=1e-6)
    for s in streams:  # D and the encoder are saved with the model
        for a, b in zip(
            model.discriminator_variables(s), reloaded.discriminator_variables(s), strict=True
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(model.semantic_encoder.weights, reloaded.semantic_encoder.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    if BACKEND == "tensorflow":
        import tensorflow as tf

        export_dir = str(tmp_path / "savedmodel")
        model.export(export_dir, verbose=False)
        served = tf.saved_model.load(export_dir)
        names = [v.name for v in served.variables]
        assert not any("discriminator" in n or "fc1" in n or "fc2" in n for n in names), names
        result = served.serve(x)
        for key in out:
            np.testing.assert_allclose(np.asarray(result[key]), out[key], atol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the SAL step is TF-only")
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_step_is_finite_and_keeps_the_encoder(policy):
    from keras_twostream.training import mixed_precision

    with mixed_precision(policy):
        model = make_model()
        model.compile()
        encoder = [np.array(w) for w in model.semantic_encoder.get_weights()]
        x, y = make_data()
        history = model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    assert model.compute_dtype == policy.split("_")[1]
    for name, value in history.history.items():
        assert np.all(np.isfinite(value)), name
    for a, b in zip(encoder, model.semantic_encoder.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
