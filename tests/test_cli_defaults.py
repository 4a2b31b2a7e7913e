"""Paper defaults of `keras-twostream train`: complete, consistent with the models, applied as documented."""

from types import SimpleNamespace

import numpy as np
import pytest

from keras_twostream.cli import build_parser
from keras_twostream.commands import UserError
from keras_twostream.commands.defaults import PAPER_DEFAULTS, markdown_table, training_defaults
from keras_twostream.commands.train import make_optimizer, parse_boundaries, resolve_settings


def _train_args(*extra):
    return build_parser().parse_args(["train", "data", *extra])


def test_every_model_has_paper_defaults_and_the_table_lists_them():
    from keras_twostream.models import MODELS

    assert set(MODELS) <= set(PAPER_DEFAULTS)
    table = markdown_table()
    for name in ("two_stream", "stpn", "cma", "tclsta", "mpa_sal"):
        assert f" {name} |" in table.splitlines()[0]
    assert "Sect. 4.4, Training" in table and "Sect. 5, Testing" in table


@pytest.mark.parametrize("name", ["two_stream", "stpn", "cma", "tclsta"])
def test_defaults_agree_with_the_models_compile_defaults(name):
    """The command line and `model.compile()` give the same paper optimizer."""
    from keras_twostream.models import CMA, STPN, TCLSTA, TwoStream

    cls = {"two_stream": TwoStream, "stpn": STPN, "cma": CMA, "tclsta": TCLSTA}[name]
    defaults = training_defaults(name)
    optimizer = cls.default_optimizer(SimpleNamespace(backbone=defaults["backbone"]))
    rate = optimizer.learning_rate
    first = float(rate(0)) if callable(rate) else float(np.asarray(rate))
    assert first == pytest.approx(defaults["lr"])
    assert float(optimizer.momentum) == pytest.approx(defaults["momentum"])
    assert float(optimizer.weight_decay or 0.0) == pytest.approx(defaults["weight_decay"])


def test_settings_start_from_the_paper_and_take_the_command_line():
    settings = resolve_settings("two_stream", _train_args("--model", "two_stream"))
    assert settings["lr_boundaries"] == ["50000", "70000"] and settings["iterations"] == 80000
    # Fine-tuning from pretrained weights switches to the paper's fine-tuning schedule (Sect. 5).
    settings = resolve_settings(
        "two_stream", _train_args("--model", "two_stream", "--weights", "w.h5")
    )
    assert settings["lr_boundaries"] == ["14000"] and settings["iterations"] == 20000
    settings = resolve_settings(
        "cma", _train_args("--model", "cma", "--epochs", "3", "--lr", "0.5")
    )
    assert settings["epochs"] == 3 and settings["iterations"] is None and settings["lr"] == 0.5
    assert settings["weight_decay"] == 5e-4 and settings["alternating_epochs"] == 30
    settings = resolve_settings("cma", _train_args("--model", "cma", "--alternate-every", "0"))
    assert settings["alternating_epochs"] is None
    with pytest.raises(UserError, match="--batch-size"):
        resolve_settings("cma", _train_args("--model", "cma", "--batch-size", "0"))


def test_step_schedule_in_steps_and_epochs():
    assert parse_boundaries(["40ep", "1000"], steps_per_epoch=10) == [400, 1000]
    with pytest.raises(UserError, match="increasing"):
        parse_boundaries(["50", "10"], steps_per_epoch=1)
    with pytest.raises(UserError, match="40ep"):
        parse_boundaries(["forty"], steps_per_epoch=1)
    settings = {**training_defaults("mpa_sal"), "clipnorm": 40.0}
    optimizer = make_optimizer(settings, steps_per_epoch=10)
    import keras

    schedule = keras.optimizers.schedules.deserialize(optimizer.get_config()["learning_rate"])
    rates = [float(schedule(step)) for step in (0, 399, 401, 799, 801)]
    np.testing.assert_allclose(rates, [1e-3, 1e-3, 1e-4, 1e-4, 1e-5], rtol=1e-6)
    assert float(optimizer.global_clipnorm) == 40.0


def test_rgb_normalization_follows_the_weights():
    """keras.applications ImageNet weights want Caffe input; PyTorch checkpoints the torch one."""
    from keras_twostream.commands.train import _rgb_normalization

    model = SimpleNamespace(get_config=lambda: {"backbone": "resnet50_torch"})
    assert _rgb_normalization({"weights": "tsn_r50.pth", "backbone": "resnet50_torch"}, model) == (
        "torch"
    )
    assert _rgb_normalization({"weights": "imagenet", "backbone": "resnet50"}, model) == "caffe"
    assert _rgb_normalization({"weights": "none", "backbone": "tiny"}, model) == "unit"


def test_cma_pretrains_the_flow_branch_for_one_iteration_by_default():
    """Issue 15 item 8: CMA Sect. 4.3 trains the Flow branch first; the length follows the
    iteration's unless --pretrain-flow says otherwise (0: none)."""
    settings = resolve_settings("cma", _train_args("--model", "cma"))
    assert settings["pretrain_flow_epochs"] == 30 and settings["epochs"] == 90
    settings = resolve_settings("cma", _train_args("--model", "cma", "--alternate-every", "2"))
    assert settings["pretrain_flow_epochs"] == 2
    settings = resolve_settings(
        "cma", _train_args("--model", "cma", "--alternate-every", "2", "--pretrain-flow", "0")
    )
    assert settings["pretrain_flow_epochs"] is None
    assert not resolve_settings("two_stream", _train_args("--model", "two_stream")).get(
        "pretrain_flow_epochs"
    )
    with pytest.raises(UserError, match="--pretrain-flow"):
        resolve_settings("two_stream", _train_args("--model", "two_stream", "--pretrain-flow", "3"))


def test_each_stream_gets_the_papers_initialisation_and_schedule():
    """Issue 15 item 9 (two-stream paper, Sects. 5-6): the spatial net starts from ImageNet and
    fine-tunes (1e-3 after 14K, 20K iterations); the temporal net trains from scratch (1e-3
    after 50K, 1e-4 after 70K, 80K), whatever `--weights imagenet` says; `both` keeps the joint
    fit with `--weights` for both. Checked where no weights are downloaded: the settings and
    the builder's arguments."""
    from keras_twostream import build_two_stream
    from keras_twostream.commands.train import build_kwargs, scale_boundaries

    def kwargs(*extra):
        settings = resolve_settings("two_stream", _train_args("--model", "two_stream", *extra))
        return settings, build_kwargs(build_two_stream, settings, 5, {})

    settings, built = kwargs("--stream", "spatial", "--backbone", "resnet50")
    assert settings["weights"] == "imagenet" and built["spatial_weights"] == "imagenet"
    assert settings["lr_boundaries"] == ["14000"] and settings["iterations"] == 20000
    settings, built = kwargs(
        "--stream", "temporal", "--backbone", "resnet50", "--weights", "imagenet"
    )
    assert settings["weights"] == "none" and "temporal_weights" not in built
    assert settings["lr_boundaries"] == ["50000", "70000"] and settings["iterations"] == 80000
    settings, built = kwargs("--stream", "both", "--backbone", "resnet50", "--weights", "imagenet")
    assert built["spatial_weights"] == built["temporal_weights"] == "imagenet"
    assert kwargs("--stream", "spatial")[0]["weights"] == "none"  # CNN-M-2048: no weights here
    # A shorter run keeps the schedule's shape: 50K and 70K of 80K iterations.
    settings = kwargs("--stream", "temporal", "--epochs", "8")[0]
    assert scale_boundaries(settings, epochs=8, steps_per_epoch=10) == ["50", "70"]
    with pytest.raises(UserError, match="--stream: applies to --model two_stream only"):
        resolve_settings("cma", _train_args("--model", "cma", "--stream", "spatial"))


def test_accumulate_splits_the_batch_of_an_update():
    """Issue 19 item 4: `--accumulate N` keeps --batch-size as the batch of one update."""
    from keras_twostream.commands.train import make_optimizer

    settings = resolve_settings("cma", _train_args("--model", "cma", "--accumulate", "4"))
    assert settings["batch_size"] == 128 and settings["accumulate"] == 4  # 4 x 32 per update
    assert make_optimizer(settings, steps_per_epoch=10).gradient_accumulation_steps == 4
    plain = resolve_settings("cma", _train_args("--model", "cma"))
    assert plain["accumulate"] == 1
    assert make_optimizer(plain, steps_per_epoch=10).gradient_accumulation_steps is None
    with pytest.raises(UserError, match="must split into 3 equal micro-batches"):
        resolve_settings("cma", _train_args("--model", "cma", "--accumulate", "3"))
    with pytest.raises(UserError, match="mpa_sal alternates"):
        resolve_settings("mpa_sal", _train_args("--model", "mpa_sal", "--accumulate", "2"))


def test_config_reads_back_what_train_writes(tmp_path):
    """Issue 19 item 5: `train --config RUN/train.json` takes the recorded arguments as defaults;
    options on the command line override them, even when they equal the parser's defaults."""
    import json

    from keras_twostream.cli import build_parser, main
    from keras_twostream.commands.train import apply_config, run_arguments

    words = ["frames", "--model", "cma", "--epochs", "4", "--lr", "0.02"]
    original = build_parser().parse_args(
        ["train", *words, "--batch-size", "8", "--accumulate", "2"]
    )
    recorded = json.loads(json.dumps(run_arguments(original), default=str))
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"arguments": recorded}))

    def merged(*argv):
        args = build_parser().parse_args(["train", *argv])
        return apply_config(args, list(argv))

    args = merged("--config", str(config), "--epochs", "6")
    assert run_arguments(args) == {**recorded, "epochs": 6}
    assert args.data == "frames" and args.model == "cma" and args.accumulate == 2
    assert merged("--config", str(config), "--accumulate", "1").accumulate == 1  # explicit wins
    assert merged("other_frames", "--config", str(config)).data == "other_frames"
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(UserError, match="records no training arguments"):
        merged("--config", str(tmp_path / "empty.json"))
    assert main(["train", "--config", str(tmp_path / "missing.json")]) == 2
    assert main(["train", "frames"]) == 2  # neither --model nor --config


def test_two_stream_trains_with_its_papers_augmentation():
    """Issue 19: the two-stream paper's crops (Sect. 5) are its CLI default; the TSN-based
    models keep TSN's multi-scale crops; --augmentation chooses either."""
    assert resolve_settings("two_stream", _train_args("--model", "two_stream"))["augmentation"] == (
        "two_stream"
    )
    for name in ("stpn", "cma", "tclsta", "mpa_sal"):
        assert resolve_settings(name, _train_args("--model", name))["augmentation"] == "tsn"
    args = _train_args("--model", "cma", "--augmentation", "two_stream")
    assert resolve_settings("cma", args)["augmentation"] == "two_stream"
    assert "| training augmentation | two_stream (Sect. 5, Training" in markdown_table()


def test_two_stream_samples_its_videos_uniformly_across_the_classes():
    """Issue 19: the two-stream paper's class-uniform sampling (Sect. 5, "sampling 256 training
    videos (uniformly across the classes)") is its CLI default; the others shuffle every video
    once per epoch (TSN); --video-sampling chooses either."""
    assert resolve_settings("two_stream", _train_args("--model", "two_stream"))[
        "video_sampling"
    ] == "class_uniform"
    for name in ("stpn", "cma", "tclsta", "mpa_sal", "cma_3d"):
        assert resolve_settings(name, _train_args("--model", name))["video_sampling"] == "shuffle"
    args = _train_args("--model", "two_stream", "--video-sampling", "shuffle")
    assert resolve_settings("two_stream", args)["video_sampling"] == "shuffle"
    assert "| video sampling | class_uniform (Sect. 5, Training" in markdown_table()


def test_stpn_multistage_training_starts_from_two_stream_runs(tmp_path):
    """Issue 19: STPN Sect. 4.1 fine-tunes each stream alone, then copies it into the pyramid;
    `train --model stpn --init-streams SPATIAL_RUN TEMPORAL_RUN` does the copy."""
    import numpy as np

    from keras_twostream import build_stpn, build_two_stream
    from keras_twostream.commands.train import init_stpn_streams

    tiny = dict(backbone="tiny", image_size=64, flow_length=1)
    paths = {}
    for stream in ("spatial", "temporal"):
        model = build_two_stream(3, streams=[stream], **tiny)
        for weight in model.weights:  # not a fresh initialisation: a "trained" stream
            weight.assign(np.random.default_rng(len(paths)).normal(size=weight.shape))
        paths[stream] = tmp_path / f"{stream}.keras"
        model.save(paths[stream])
    stpn = build_stpn(3, fusion_dim=64, seed=0, **tiny)
    copied = init_stpn_streams(stpn, [paths["spatial"], paths["temporal"]])
    assert [stream for stream, _ in copied] == ["spatial", "temporal"]
    for stream in ("spatial", "temporal"):
        source = build_two_stream(3, streams=[stream], **tiny)
        source.load_weights(paths[stream])
        theirs = {
            layer.name: layer for layer in getattr(source, f"{stream}_backbone")._flatten_layers()
        }
        for layer in stpn.stream_layers(stream):
            for a, b in zip(layer.get_weights(), theirs[layer.name].get_weights(), strict=True):
                np.testing.assert_array_equal(a, b)
    with pytest.raises(UserError, match="has no temporal stream"):
        init_stpn_streams(build_stpn(3, fusion_dim=64, seed=0, **tiny), [paths["spatial"]])
    with pytest.raises(UserError, match="--model stpn only"):
        resolve_settings("cma", _train_args("--model", "cma", "--init-streams", "run"))


def test_a_run_recorded_before_an_option_existed_still_resumes(tmp_path):
    """An option added later (e.g. --accumulate) had its default in a run that does not record it;
    only a real difference refuses the rerun."""
    import json

    from keras_twostream.cli import build_parser
    from keras_twostream.commands.train import check_rerun, run_arguments

    arguments = run_arguments(build_parser().parse_args(["train", "frames", "--model", "cma"]))
    older = {k: v for k, v in arguments.items() if k not in ("accumulate", "augmentation")}
    (tmp_path / "train.json").write_text(json.dumps({"arguments": older}, default=str))
    (tmp_path / "history.csv").write_text("epoch,loss\n0,1.0\n")
    check_rerun(tmp_path, arguments, restart=False)  # same run: resumes
    changed = run_arguments(
        build_parser().parse_args(["train", "frames", "--model", "cma", "--accumulate", "2"])
    )
    with pytest.raises(UserError, match="--accumulate 1 -> 2"):
        check_rerun(tmp_path, changed, restart=False)
