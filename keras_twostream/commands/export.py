"""`keras-twostream export`: the inference model as a TensorFlow SavedModel or an ONNX file.

    keras-twostream export MODEL OUT [--format savedmodel|onnx] [--segments K]

`savedmodel` (default): `model.export(OUT)`; its `serving_default` signature
takes the model's named inputs (`rgb`, `flow`, `rgb_diff`: float32
`(batch, K, H, W, C)`, preprocessed as in training) and returns a dict of the
model's outputs (`spatial`, `temporal`, `fused`, ...). It loads with
TensorFlow alone:

    import tensorflow as tf
    serve = tf.saved_model.load(OUT).signatures["serving_default"]
    scores = serve(rgb=rgb, flow=flow)["fused"]

The model card (class names, data settings) is copied to
`OUT/assets.extra/keras_twostream.json`.

`onnx`: `model.export(OUT, format="onnx")`, which needs the `tf2onnx`, `onnx`
and (to check the result) `onnxruntime` packages; the file is then run with
onnxruntime on random inputs and compared with Keras. Conversion can fail for
layers tf2onnx does not support; the command then stops with the converter's
reason.

`--segments K` exports the model rebuilt for `K` segments (same weights; e.g.
`--segments 1` scores single views, as `keras-twostream evaluate` does).
"""

import json
import os
import shutil
from pathlib import Path

from keras_twostream.commands import UserError, common

COMMAND = "export"


def add_arguments(parser):
    """Adds `export`'s arguments to an `argparse` parser.

    Example:

    >>> import argparse
    >>> from keras_twostream.commands import export
    >>> parser = argparse.ArgumentParser()
    >>> export.add_arguments(parser)
    >>> parser.parse_args(["best.keras", "model.onnx", "--format", "onnx"]).format
    'onnx'
    """
    parser.add_argument("model", help="a .keras model or a training output folder")
    parser.add_argument("out", help="SavedModel folder, or .onnx file")
    parser.add_argument("--format", choices=["savedmodel", "onnx"], default="savedmodel")
    parser.add_argument(
        "--segments", type=int, help="rebuild for this many segments (default: as trained)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(func=run)


def _random_inputs(model, batch=2, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    shapes = getattr(model, "_input_shapes", None) or {
        name: tuple(t.shape[1:]) for name, t in model.input.items()
    }
    return {
        name: rng.standard_normal((batch, *shape)).astype("float32")
        for name, shape in shapes.items()
    }


def _check_onnx(path, model):
    """Runs the ONNX file with onnxruntime and returns the largest difference from Keras."""
    import numpy as np

    try:
        import onnxruntime
    except ImportError:
        common.say(COMMAND, "onnxruntime is not installed: the ONNX file was not checked")
        return None
    inputs = _random_inputs(model)
    expected = model.predict(inputs, verbose=0)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {i.name: inputs[i.name] for i in session.get_inputs()})
    names = [o.name for o in session.get_outputs()]
    expected = expected if isinstance(expected, dict) else {names[0]: expected}
    return max(
        float(np.abs(np.asarray(expected[n]) - g).max()) for n, g in zip(names, got, strict=True)
    )


def run(args):
    """Runs `keras-twostream export` (see the module docstring).

    Example:

    >>> from keras_twostream.cli import main
    >>> main(["export", "runs/two_stream/best.keras", "two_stream_savedmodel"])  # doctest: +SKIP
    0
    """
    model, model_path = common.load_model(args.model)
    info = common.read_sidecar(model_path)
    if args.segments is not None:
        spec = common.model_spec(model)
        if args.segments < 1:
            raise UserError(
                f"argument --segments: expected a positive integer, got {args.segments}"
            )
        if spec.segment_arg is None or not hasattr(model, "rebuild"):
            raise UserError(f"{model_path}: this model has no segment count to change")
        model = model.rebuild(**{spec.segment_arg: args.segments})
    card = {**info, "data_config": common.data_config_of(model, info)}
    model.predict(
        _random_inputs(model, batch=1), verbose=0
    )  # the ONNX converter needs a called model
    out = Path(args.out)
    if out.exists():
        if not args.overwrite:
            raise UserError(f"{out} exists; remove it or pass --overwrite")
    if args.format == "onnx" and out.suffix != ".onnx":
        raise UserError(f"{out}: an ONNX export needs a file name ending in .onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.stem}.tmp-{os.getpid()}{out.suffix}")
    shutil.rmtree(temp, ignore_errors=True)
    if args.format == "savedmodel":
        try:
            model.export(str(temp), format="tf_saved_model", verbose=False)
        except Exception as error:  # noqa: BLE001 - reported as one line, the cause is the model's
            shutil.rmtree(temp, ignore_errors=True)
            raise UserError(f"SavedModel export failed: {common.first_line(error)}") from None
        # What a server needs to make the inputs: the model card and the model's data config.
        extra = temp / "assets.extra"
        extra.mkdir(exist_ok=True)
        (extra / "keras_twostream.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(temp, out)
        shapes = getattr(model, "_input_shapes", {})
        common.say(COMMAND, f"SavedModel: {out}")
        common.say(
            COMMAND,
            "serving_default("
            + ", ".join(f"{k}=float32[batch, {', '.join(map(str, v))}]" for k, v in shapes.items())
            + ") -> {"
            + ", ".join(n for n, _ in common.score_outputs(model))
            + "}",
        )
        return 0
    missing = [m for m in ("tf2onnx", "onnx") if _missing(m)]
    if missing:
        raise UserError(
            f"ONNX export needs the packages {', '.join(missing)}: pip install tf2onnx onnx onnxruntime"
        )
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # tf2onnx's np.object probe
            model.export(str(temp), format="onnx", verbose=False)
    except Exception as error:  # noqa: BLE001 - the converter's reason, in one line
        if temp.exists():
            temp.unlink()
        raise UserError(
            f"ONNX conversion failed for this model ({type(error).__name__}: {common.first_line(error)})"
        ) from None
    try:
        difference = _check_onnx(temp, model)
    except Exception as error:  # noqa: BLE001
        temp.unlink()
        raise UserError(
            f"the ONNX file does not run in onnxruntime ({common.first_line(error)})"
        ) from None
    if out.exists():
        out.unlink()
    os.replace(temp, out)
    common.write_sidecar(out, {k: v for k, v in card.items() if k != "format"})
    common.say(
        COMMAND,
        f"ONNX: {out}"
        + ("" if difference is None else f" (max |onnxruntime - Keras| = {difference:.2e})"),
    )
    return 0


def _missing(module):
    import importlib.util

    return importlib.util.find_spec(module) is None
