"""Class-uniform sampling (two-stream paper, Sect. 5) and multi-task data (Sect. 4).

Real tf.data pipelines over frame folders written with OpenCV (`test_pipeline.write_folder`);
every yielded sample is traced back to its video by its decoded pixels.
"""

import keras
import numpy as np
import pandas as pd
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("cv2")

from test_pipeline import write_folder  # noqa: E402

from keras_twostream import build_two_stream  # noqa: E402
from keras_twostream.data import make_dataset, make_multi_task_dataset  # noqa: E402
from keras_twostream.data.sampling import class_uniform_indices  # noqa: E402

SMALL = dict(num_segments=1, flow_length=2, image_size=32)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Seven frame folders with distinct content: four for task "a", three for task "b"."""
    root = tmp_path_factory.mktemp("multitask")
    return [write_folder(root / f"v{i}", num_rgb=4, seed=10 + i) for i in range(7)]


def sources_of(folders):
    return {
        "a": pd.DataFrame({"path": folders[:4], "label": [0, 2, 1, 2]}),
        "b": pd.DataFrame({"path": folders[4:], "label": [3, 0, 3]}),
    }


def test_class_uniform_indices_is_uniform_over_classes_then_videos():
    classes = np.array([0] * 12 + [1] * 3 + [2])  # 12, 3 and 1 videos
    picks = class_uniform_indices(classes, 60000, np.random.default_rng(0))
    # 60000 draws: the standard deviation of a frequency near 1/3 is 0.0019, of a video's
    # share within class 0 (p = 1/36) 0.00067; 5 sigma leaves a seed no room to matter.
    np.testing.assert_allclose(np.bincount(classes[picks]) / 60000, [1 / 3] * 3, atol=0.01)
    per_video = np.bincount(picks, minlength=16) / 60000
    np.testing.assert_allclose(per_video[:12], 1 / 36, atol=0.0034)
    np.testing.assert_allclose(per_video[12:15], 1 / 9, atol=0.01)
    weights = class_uniform_indices(classes, 30000, np.random.default_rng(1), [0.5, 0.25, 0.25])
    np.testing.assert_allclose(np.bincount(classes[weights]) / 30000, [0.5, 0.25, 0.25], atol=0.015)
    with pytest.raises(ValueError, match="class_probabilities"):
        class_uniform_indices(classes, 5, np.random.default_rng(0), [0.5, 0.5])


def test_class_uniform_sampling_draws_classes_uniformly(tests_data):
    folder = str(tests_data / "mmaction2" / "imgs")
    labels = [0] * 24 + [1] * 4 + [2] * 2  # imbalanced: 80%, 13%, 7% of the videos
    table = pd.DataFrame({"path": [folder] * 30, "label": labels})
    common = dict(modalities=("rgb",), num_segments=1, image_size=8, batch_size=30, seed=3)
    uniform = make_dataset(table, video_sampling="class_uniform", **common)
    shuffled = make_dataset(table, **common)
    epochs = 10

    def frequencies(ds):
        seen = np.concatenate([y.numpy() for _ in range(epochs) for _, y in ds])
        assert len(seen) == 30 * epochs  # an epoch is still len(table) samples
        return np.bincount(seen, minlength=3) / len(seen)

    # 300 samples: a class frequency of 1/3 has standard deviation sqrt(1/3 * 2/3 / 300) =
    # 0.027; 0.1 is 3.7 of them, so any seed passes, while shuffling (0.8, 0.13, 0.07) is
    # at least 0.2 off for every class.
    np.testing.assert_allclose(frequencies(uniform), [1 / 3] * 3, atol=0.1)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(frequencies(shuffled), [1 / 3] * 3, atol=0.1)
    # Seeded: the same seed draws the same epochs (epoch e depends on (seed, e) only), and
    # epochs differ.
    again = make_dataset(table, video_sampling="class_uniform", **common)
    first = [y.numpy().tolist() for _ in range(2) for _, y in again]
    uniform.set_epoch(0)
    repeat = [y.numpy().tolist() for _ in range(2) for _, y in uniform]
    assert first == repeat and first[0] != first[1]
    with pytest.raises(ValueError, match="video_sampling"):
        make_dataset(table, video_sampling="balanced", **common)
    with pytest.raises(ValueError, match="shuffle=False"):
        make_dataset(table, video_sampling="class_uniform", shuffle=False, **common)


def test_multi_task_labels_are_the_own_task_label_and_minus_one(folders):
    sources = sources_of(folders)
    # The reference input of each video: the same centre view, one video at a time.
    one = [pd.DataFrame({"path": [f], "label": [0]}) for f in folders]
    reference = [next(iter(make_dataset(t, training=False, **SMALL)))[0] for t in one]
    expected = {
        i: {"a": a, "b": b}
        for i, (a, b) in enumerate([(0, -1), (2, -1), (1, -1), (2, -1), (-1, 3), (-1, 0), (-1, 3)])
    }
    ds = make_multi_task_dataset(
        sources,
        num_classes={"a": 3, "b": 4},
        training=False,
        shuffle=True,  # centre views, in a shuffled order
        batch_size=3,
        seed=5,
        **SMALL,
    )
    assert list(ds.element_spec[1]) == ["a", "b"]
    seen = []
    for inputs, labels in ds:
        for j in range(len(labels["a"])):
            match = [
                i
                for i, ref in enumerate(reference)
                if np.array_equal(ref["rgb"][0], inputs["rgb"][j])
                and np.array_equal(ref["flow"][0], inputs["flow"][j])
            ]
            assert len(match) == 1
            seen.append(match[0])
            assert {t: int(labels[t][j]) for t in "ab"} == expected[match[0]]
    assert sorted(seen) == list(range(7)) and seen != list(range(7))  # each once, shuffled
    # Class-uniform over the union of the classes: 3 + 2 (task, class) pairs with videos.
    mixed = make_multi_task_dataset(
        sources, video_sampling="class_uniform", batch_size=7, seed=0, **SMALL
    )
    draws = np.concatenate([mixed._draw_epoch(e)["label"] for e in range(400)])  # (2800, 2)
    # 2800 draws: sd of a pair's frequency (p = 1/5) is 0.0076; 0.03 is 4 of them.
    pairs = [(0, -1), (1, -1), (2, -1), (-1, 0), (-1, 3)]
    for pair in pairs:
        assert abs(np.mean(np.all(draws == pair, axis=1)) - 0.2) < 0.03, pair
    weighted = make_multi_task_dataset(
        sources,
        video_sampling="class_uniform",
        task_weights={"a": 1, "b": 3},
        batch_size=7,
        seed=0,
        **SMALL,
    )
    draws = np.concatenate([weighted._draw_epoch(e)["label"] for e in range(400)])
    assert abs(np.mean(draws[:, 1] >= 0) - 0.75) < 0.035  # sd 0.0082
    assert abs(np.mean(draws[:, 1] == 0) - 0.375) < 0.035  # uniform within task b


def test_multi_task_arguments_are_checked(folders):
    sources = sources_of(folders)
    with pytest.raises(ValueError, match="at least two tasks"):
        make_multi_task_dataset({"a": sources["a"]}, **SMALL)
    with pytest.raises(ValueError, match="at least two tasks"):
        make_multi_task_dataset({}, **SMALL)
    with pytest.raises(ValueError, match=r"task 'b'.*label 3 is out of range for num_classes=3"):
        make_multi_task_dataset(sources, num_classes={"a": 3, "b": 3}, **SMALL)
    with pytest.raises(ValueError, match=r"sources name the tasks \['a', 'b'\]"):
        make_multi_task_dataset(sources, num_classes={"a": 3, "c": 4}, **SMALL)
    with pytest.raises(ValueError, match="task_weights.*video_sampling='class_uniform'"):
        make_multi_task_dataset(sources, task_weights={"a": 1, "b": 1}, **SMALL)
    with pytest.raises(ValueError, match=r"task_weights\['b'\]"):
        make_multi_task_dataset(
            sources, task_weights={"a": 1, "b": -1}, video_sampling="class_uniform", **SMALL
        )
    with pytest.raises(TypeError, match="each task's table and root come from sources"):
        make_multi_task_dataset(sources, root="/data", **SMALL)
    with pytest.raises(FileNotFoundError, match="task 'a'"):
        make_multi_task_dataset({**sources, "a": pd.DataFrame({"path": ["nowhere"], "label": [0]})})
    # Against the model: its tasks, their class counts, its data settings.
    model = build_two_stream({"a": 3, "b": 5}, backbone="tiny", image_size=32, flow_length=2)
    with pytest.raises(ValueError, match=r"num_classes=\{'a': 3, 'b': 4\} but the model predicts"):
        make_multi_task_dataset(sources, num_classes={"a": 3, "b": 4}, data_config=model)
    with pytest.raises(ValueError, match=r"sources name the tasks \['a', 'c'\], the model's tasks"):
        make_multi_task_dataset({"a": sources["a"], "c": sources["b"]}, data_config=model)
    with pytest.raises(ValueError, match="image_size=48 contradicts the model's data config"):
        make_multi_task_dataset(sources, data_config=model, image_size=48)
    single = build_two_stream(4, backbone="tiny", image_size=32, flow_length=2)
    with pytest.raises(ValueError, match="the model has one task"):
        make_multi_task_dataset(sources, data_config=single)
    model.set_data_config(class_names={"a": ["x", "y", "z"], "b": list("pqrst")})
    named = {**sources, "b": sources["b"].copy()}
    named["b"].attrs["classes"] = list("pqrsu")
    with pytest.raises(ValueError, match="task 'b'.*label 4 is 'u' in the table"):
        make_multi_task_dataset(named, data_config=model)


def test_fit_on_the_mixed_dataset_trains_each_head_on_its_own_task_only(folders):
    """Sect. 4: each softmax's loss "operates only on the videos, coming from the respective
    dataset". A batch of task-"a" videos moves no weight of task "b"'s classifiers."""
    model = build_two_stream(
        {"a": 3, "b": 4}, backbone="tiny", image_size=32, flow_length=2, temporal_dropout=0.5
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.0))
    sources = sources_of(folders)
    # Unshuffled: the first batch of 4 is exactly task a's videos.
    only_a = make_multi_task_dataset(
        sources, data_config=model, shuffle=False, batch_size=4, seed=0
    )
    _, labels = next(iter(only_a))
    assert (labels["b"].numpy() == -1).all() and (labels["a"].numpy() >= 0).all()
    names = ["spatial_a", "temporal_a", "spatial_b", "temporal_b"]
    before = {n: model.get_layer(f"{n}_classifier").kernel.numpy() for n in names}
    history = model.fit(only_a.take(1), epochs=1, verbose=0, shuffle=False)
    after = {n: model.get_layer(f"{n}_classifier").kernel.numpy() for n in names}
    for n in ("spatial_b", "temporal_b"):
        np.testing.assert_array_equal(after[n], before[n])
    for n in ("spatial_a", "temporal_a"):
        assert not np.allclose(after[n], before[n])
    assert np.isfinite(history.history["loss"][0])
    # The mixed, class-uniform stream trains every head in one fit.
    mixed = make_multi_task_dataset(
        sources, data_config=model, video_sampling="class_uniform", batch_size=4, seed=1
    )
    history = model.fit(mixed, epochs=1, verbose=0, shuffle=False)
    assert {"spatial_loss", "spatial_b_loss", "fused_b_accuracy"} <= set(history.history)
    assert np.isfinite(history.history["loss"][0])
