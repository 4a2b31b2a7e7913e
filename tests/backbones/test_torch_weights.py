"""PyTorch checkpoints (torchvision, MMAction2) read with NumPy and loaded into torch-layout backbones.

The committed checkpoints and reference outputs of tests/data/torch_checkpoints were written by
PyTorch (tests/data/torch_checkpoints/make_fixtures.py); nothing here imports torch, except the
full-size ResNet-50 check, skipped where torch is absent (as in CI).
"""

import os
import pickle
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from torch_files import global_op, save_state_dict, write_pth

from keras_twostream.backbones import (
    UnsafeCheckpointError,
    adapt_input_channels,
    get_backbone,
    load_torch_weights,
    read_torch_checkpoint,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "torch_checkpoints"
REFERENCE = np.load(DATA / "tiny_outputs.npz")
CHECKPOINTS = {
    "tiny_rgb_mmaction2.pth": ("rgb", "mmaction2"),
    "tiny_rgb_torchvision.pth": ("rgb", "torchvision"),
    "tiny_flow_mmaction2.pth": ("flow", "mmaction2"),
}


def nhwc(array):
    return np.transpose(array, (0, 2, 3, 1))  # [B, C, H, W] -> [B, H, W, C]


def assert_close(actual, expected, tolerance=1e-4):
    scale = max(float(np.max(np.abs(expected))), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance * scale)


def tiny_with_classifier(channels, name=None):
    backbone = get_backbone("tiny_torch", input_shape=(None, None, channels), name=name)
    classifier = keras.layers.Dense(5, name="classifier")
    classifier.build((None, 256))
    return backbone, classifier


@pytest.mark.parametrize("filename", sorted(CHECKPOINTS))
def test_converted_checkpoints_match_pytorch(filename):
    modality, layout = CHECKPOINTS[filename]
    channels = 3 if modality == "rgb" else 10
    backbone, classifier = tiny_with_classifier(channels)
    report = load_torch_weights(backbone, DATA / filename, classifier=classifier)
    assert report.layout == layout
    assert report.missing == report.unexpected == report.skipped == report.adapted == []
    assert len(report.mapped) == len(backbone.weights) + 2  # every weight, plus fc

    x = nhwc(REFERENCE[f"{modality}_input"])  # 64x72: odd sizes after layer2
    out = {k: keras.ops.convert_to_numpy(v) for k, v in backbone(x, training=False).items()}
    for stage, layer in zip(("res2", "res3", "res4", "res5"), range(1, 5), strict=True):
        assert_close(out[stage], nhwc(REFERENCE[f"{modality}_layer{layer}"]))
    assert_close(out["features"], REFERENCE[f"{modality}_features"])
    logits = keras.ops.convert_to_numpy(classifier(out["features"]))
    assert_close(logits, REFERENCE[f"{modality}_logits"])
    # The blocks run one by one (as CMA runs them) give the same result.
    blockwise = backbone.run_blocks(x, training=False)
    assert_close(keras.ops.convert_to_numpy(blockwise["res5"]), out["res5"], 1e-6)


def test_normalization_is_recorded():
    rgb, _ = tiny_with_classifier(3)
    flow, _ = tiny_with_classifier(10)
    assert load_torch_weights(rgb, DATA / "tiny_rgb_mmaction2.pth").normalization == {
        "rgb_normalization": "torch"
    }
    assert flow.stream == "spatial"  # built without stream: the channels say flow
    report = load_torch_weights(flow, DATA / "tiny_flow_mmaction2.pth")
    assert report.normalization == {"flow_normalization": "mmaction", "mean_subtract_flow": False}
    assert flow.torch_normalization == report.normalization
    assert report.skipped == ["cls_head.fc_cls.weight", "cls_head.fc_cls.bias"]


def test_rgb_conv1_is_adapted_to_flow_channels():
    """TSN's cross-modality initialisation when an RGB checkpoint meets a 2L-channel input."""
    flow = get_backbone("tiny_torch", input_shape=(32, 32, 10), stream="temporal")
    report = load_torch_weights(flow, DATA / "tiny_rgb_torchvision.pth")
    assert report.adapted == ["conv1.weight"]
    rgb_kernel = np.transpose(
        read_torch_checkpoint(DATA / "tiny_rgb_torchvision.pth")["conv1.weight"], (2, 3, 1, 0)
    )
    kernel = keras.ops.convert_to_numpy(flow.blocks[0][1].get_layer("conv1").kernel)
    np.testing.assert_allclose(kernel, adapt_input_channels(rgb_kernel, 10), rtol=1e-6)


def test_builder_weights_argument_takes_a_pth_file():
    backbone = get_backbone(
        "tiny_torch", input_shape=(64, 72, 3), weights=DATA / "tiny_rgb_torchvision.pth"
    )
    out = backbone(nhwc(REFERENCE["rgb_input"]), training=False)
    assert_close(keras.ops.convert_to_numpy(out["features"]), REFERENCE["rgb_features"])
    with pytest.raises(ValueError, match="PyTorch checkpoints, not keras.applications"):
        get_backbone("tiny_torch", weights="imagenet")


def test_reader_dtypes_strides_and_offsets():
    state = read_torch_checkpoint(DATA / "dtypes.pth")
    base = np.arange(24, dtype="float32").reshape(4, 6) / 8
    assert state["half"].dtype == np.float16 and state["double"].dtype == np.float64
    np.testing.assert_array_equal(state["half"], base)
    np.testing.assert_array_equal(state["bfloat16"], base)  # multiples of 1/8: exact
    assert state["bfloat16"].dtype == np.float32
    np.testing.assert_array_equal(state["double"], base)
    np.testing.assert_array_equal(state["long"], np.arange(5) - 2)
    np.testing.assert_array_equal(state["transposed"], base.T)
    np.testing.assert_array_equal(state["offset"], base[1:3, 2:5])


def test_reader_meta_of_mmaction2_checkpoints():
    checkpoint = read_torch_checkpoint(DATA / "tiny_rgb_mmaction2.pth")
    assert checkpoint["meta"]["dataset_meta"]["classes"][0] == "archery"
    assert checkpoint["meta"]["epoch"] == 100
    assert "backbone.layer1.0.conv1.conv.weight" in checkpoint["state_dict"]


def test_test_writer_matches_torch_save(tmp_path):
    """The opcode writer of the error tests below writes what torch.save writes."""
    state = read_torch_checkpoint(DATA / "tiny_rgb_torchvision.pth")
    for wrap in (False, True):
        path = save_state_dict(tmp_path / f"copy_{wrap}.pth", state, wrap_mmaction2=wrap)
        again = read_torch_checkpoint(path)
        again = again["state_dict"] if wrap else again
        assert list(again) == list(state)
        for key in state:
            np.testing.assert_array_equal(again[key], state[key])


@pytest.mark.parametrize(
    "module, name, source",
    [
        ("posix", "system", "touch {marker}"),
        ("os", "system", "touch {marker}"),
        ("builtins", "exec", "open({marker!r}, 'w').close()"),
        ("builtins", "eval", "open({marker!r}, 'w').close()"),
    ],
)
def test_a_pickle_carrying_another_callable_is_refused(tmp_path, module, name, source):
    def evil_pickle(marker):
        command = source.format(marker=str(marker)).encode()
        argument = b"X" + len(command).to_bytes(4, "little") + command
        return global_op(module, name) + b"(" + argument + b"tR"

    # The payload is real: plain pickle runs it.
    control = tmp_path / "control"
    pickle.loads(b"\x80\x02" + evil_pickle(control) + b".")
    assert control.exists()

    marker = tmp_path / "executed"
    path = write_pth(tmp_path / "evil.pth", evil_pickle(marker))
    with pytest.raises(UnsafeCheckpointError, match=rf"refused to load '{module}\.{name}'"):
        read_torch_checkpoint(path)
    backbone = get_backbone("tiny_torch", input_shape=(32, 32, 3))
    with pytest.raises(UnsafeCheckpointError, match="evil.pth"):
        load_torch_weights(backbone, path)
    assert not marker.exists()
    assert sorted(os.listdir(tmp_path)) == ["control", "evil.pth"]


def test_missing_unexpected_and_misshapen_keys_are_named(tmp_path):
    state = dict(read_torch_checkpoint(DATA / "tiny_rgb_torchvision.pth"))
    backbone = get_backbone("tiny_torch", input_shape=(32, 32, 3))

    missing = {k: v for k, v in state.items() if not k.startswith("layer2.0.bn2.")}
    with pytest.raises(
        ValueError, match=r"lacks 4 weights.*layer2\.0\.bn2\.weight, layer2\.0\.bn2\.bias"
    ):
        load_torch_weights(backbone, save_state_dict(tmp_path / "missing.pth", missing))

    extra = {**state, "layer5.0.conv1.weight": np.zeros((2, 2, 1, 1), "float32")}
    extra_path = save_state_dict(tmp_path / "extra.pth", extra)
    with pytest.raises(
        ValueError, match=r"1 checkpoint keys map to nothing.*layer5\.0\.conv1\.weight"
    ):
        load_torch_weights(backbone, extra_path)
    report = load_torch_weights(backbone, extra_path, strict=False)
    assert report.unexpected == ["layer5.0.conv1.weight"]
    assert "1 unexpected: layer5.0.conv1.weight" in report.summary()

    wrong = {**state, "layer3.0.conv2.weight": np.zeros((32, 32, 1, 1), "float32")}
    before = [keras.ops.convert_to_numpy(w) for w in backbone.weights]
    with pytest.raises(
        ValueError,
        match=r"layer3\.0\.conv2\.weight has shape \(32, 32, 1, 1\).*expects \(3, 3, 32, 32\)",
    ):
        load_torch_weights(backbone, save_state_dict(tmp_path / "wrong.pth", wrong))
    # Nothing was assigned before the mismatch was found.
    for old, new in zip(before, backbone.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(new), old)

    # A tiny checkpoint is not a ResNet-50: its missing blocks are named.
    with pytest.raises(ValueError, match=r"layer1\.1\.conv1\.weight"):
        load_torch_weights(
            get_backbone("resnet50_torch", input_shape=(64, 64, 3)),
            DATA / "tiny_rgb_torchvision.pth",
        )


def test_mmaction2_keys_outside_backbone_and_head_are_unexpected(tmp_path):
    state = read_torch_checkpoint(DATA / "tiny_rgb_mmaction2.pth")["state_dict"]
    extra = {**state, "neck.fc.weight": np.zeros((2, 2), "float32")}
    path = save_state_dict(tmp_path / "neck.pth", extra, wrap_mmaction2=True)
    with pytest.raises(ValueError, match=r"neck\.fc\.weight"):
        load_torch_weights(get_backbone("tiny_torch", input_shape=(32, 32, 3)), path)


def test_bad_files_and_arguments(tmp_path):
    backbone = get_backbone("tiny_torch", input_shape=(32, 32, 3))
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        load_torch_weights(backbone, tmp_path / "nothing.pth")
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19" + b"\x00" * 16)
    with pytest.raises(ValueError, match=r"legacy PyTorch checkpoint.*Re-save"):
        load_torch_weights(backbone, legacy)
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        load_torch_weights(backbone, text)
    truncated = tmp_path / "truncated.pth"
    with zipfile.ZipFile(truncated, "w") as f:  # a pickle cut in the middle
        f.writestr("archive/data.pkl", b"\x80\x02}(X\x01\x00\x00\x00a")
    with pytest.raises(ValueError, match="corrupt checkpoint"):
        load_torch_weights(backbone, truncated)
    with pytest.raises(ValueError, match="torchvision-layout Backbone"):
        load_torch_weights(
            get_backbone("tiny", input_shape=(32, 32, 3)), DATA / "tiny_rgb_torchvision.pth"
        )
    with pytest.raises(ValueError, match="classifier"):
        load_torch_weights(backbone, DATA / "tiny_rgb_torchvision.pth", classifier="fc")
    classifier = keras.layers.Dense(7)
    classifier.build((None, 256))
    with pytest.raises(ValueError, match=r"fc\.weight has shape \(5, 256\).*expects \(256, 7\)"):
        load_torch_weights(backbone, DATA / "tiny_rgb_torchvision.pth", classifier=classifier)


def test_storage_read_past_its_end_is_refused(tmp_path):
    array = np.arange(4, dtype="float32")
    body = save_state_dict(tmp_path / "ok.pth", {"x": array})
    with zipfile.ZipFile(body) as f:
        pkl = f.read("archive/data.pkl")
    # Claim a (4, 4) tensor on a 4-element storage.
    bad = pkl.replace(
        b"(J\x04\x00\x00\x00t(J\x01\x00\x00\x00t",
        b"(J\x04\x00\x00\x00J\x04\x00\x00\x00t(J\x04\x00\x00\x00J\x01\x00\x00\x00t",
    )
    assert bad != pkl
    path = tmp_path / "bad.pth"
    with zipfile.ZipFile(path, "w") as f:
        f.writestr("archive/data.pkl", bad)
        f.writestr("archive/data/0", array.tobytes())
    with pytest.raises(ValueError, match="past the end of its storage"):
        read_torch_checkpoint(path)


@pytest.mark.slow
def test_full_size_resnet50_matches_torchvision(tmp_path):
    """A torchvision ResNet-50 (random weights and statistics) as an MMAction2 checkpoint."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_fixtures", DATA / "make_fixtures.py")
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    assert torch and torchvision
    fixtures.write_resnet50(str(tmp_path))
    check_resnet50(tmp_path)


def check_resnet50(directory):
    """Converts `resnet50.pth` of `make_fixtures.py --resnet50 DIR` and compares its outputs."""
    reference = np.load(Path(directory) / "resnet50_outputs.npz")
    backbone = get_backbone("resnet50_torch", input_shape=(224, 224, 3))
    classifier = keras.layers.Dense(400)
    classifier.build((None, 2048))
    load_torch_weights(backbone, Path(directory) / "resnet50.pth", classifier=classifier)
    out = backbone(nhwc(reference["input"]), training=False)
    errors = {}
    for stage, layer in zip(("res2", "res3", "res4", "res5"), range(1, 5), strict=True):
        actual = keras.ops.convert_to_numpy(out[stage])
        assert_close(actual, nhwc(reference[f"layer{layer}"]))
        errors[stage] = float(np.max(np.abs(actual - nhwc(reference[f"layer{layer}"]))))
    logits = keras.ops.convert_to_numpy(classifier(out["features"]))
    assert_close(logits, reference["logits"])
    errors["logits"] = float(np.max(np.abs(logits - reference["logits"])))
    return errors
