"""TCLSTA on the embedded synthetic dataset: the component ablation and a Figure 7-style plot.

Peng, Zhao and Zhang, "Two-Stream Collaborative Learning with Spatial-Temporal Attention for
Video Classification", IEEE TCSVT 2018. This script

1. generates the synthetic appearance x motion dataset (real videos, UCF101 layout) and extracts
   RGB frames and optical flow (DIS: TV-L1 is the paper's choice but far slower on a CPU);
2. trains `build_tclsta` with a tiny backbone in the settings of the paper's Tables VI-VII:
   "Two-stream" (no attention), "+SA", "+TA", "+STA" and "+STA+CLN";
3. evaluates every setting on the test split (T centre snippets per video): the frame stream,
   the flow stream and their fusions (Table VIII): late (average), early (a classifier on the
   concatenated features) and adaptively weighted learning (AWL, Eqs. 10-14) fitted on the
   training videos' scores, as the paper's program (`min_weight=0`) and with every stream kept
   at a weight of at least 0.25;
4. prints the tables and how many classes AWL gives to a single stream, then saves the
   spatial and temporal attention of a few test clips as `attention_<stream>.png`.

The synthetic classes need both streams (frames tell the appearance, flow the motion; see
`keras_twostream.datasets.synthetic`), so a fusion that picks one stream per class, which the
paper's linear program does, cannot recognise them: the AWL column shows it.

    python examples/train_tclsta.py [--output keras_twostream_outputs/tclsta] [--epochs 15] [--quick]

The models learn from scratch with Adam (the paper fine-tunes ImageNet ResNet-50s with SGD).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

SETTINGS = {  # Table VI / VII rows -> build_tclsta switches
    "Two-stream": dict(spatial_attention=False, temporal_attention=False, collaborative=False),
    "+SA": dict(spatial_attention=True, temporal_attention=False, collaborative=False),
    "+TA": dict(spatial_attention=False, temporal_attention=True, collaborative=False),
    "+STA": dict(spatial_attention=True, temporal_attention=True, collaborative=False),
    "+STA+CLN": dict(spatial_attention=True, temporal_attention=True, collaborative=True),
}


def say(message):
    print(f"[tclsta] {message}", flush=True)


def prepare_data(output, cache, quick, image_size, seed):
    from keras_twostream.datasets import (
        extract_synthetic_frames,
        generate_synthetic_dataset,
        synthetic_dataset_path,
    )

    if quick:
        root = generate_synthetic_dataset(
            Path(cache or output / "synthetic-quick"),
            videos_per_class=(3, 1),
            num_frames=24,
            seed=seed,
        )
    else:
        root = generate_synthetic_dataset(synthetic_dataset_path(cache), seed=seed)
    data = extract_synthetic_frames(
        root, root / f"frames-dis-{image_size}", flow="dis", short_side=image_size
    )
    if data.failed:
        say(f"{len(data.failed)} videos failed to extract; continuing with the rest")
    return data.frames, data.train, data.test, data.classes


def scores_and_labels(model, dataset):
    """Every output's scores on a dataset, in dataset order, and the labels."""
    scores, labels = {}, []
    for inputs, y in dataset:
        for name, value in model.predict_on_batch(inputs).items():
            scores.setdefault(name, []).append(np.asarray(value))
        labels.append(np.asarray(y))
    return {k: np.concatenate(v) for k, v in scores.items()}, np.concatenate(labels)


def accuracy(scores, labels):
    return float((np.asarray(scores).argmax(-1) == labels).mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="keras_twostream_outputs/tclsta")
    parser.add_argument(
        "--cache", default=None, help="dataset cache folder (default: the library's)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="default 15 (1 with --quick)")
    parser.add_argument(
        "--num-segments",
        "--num-frames",  # the former name, as build_tclsta's num_frames
        dest="num_segments",
        type=int,
        default=4,
        help="T, frames per clip (build_tclsta's num_segments)",
    )
    parser.add_argument("--flow-length", type=int, default=5, help="L, flow fields per frame")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick", action="store_true", help="a few videos and one epoch (smoke test)"
    )
    args = parser.parse_args(argv)

    import keras

    from keras_twostream.data import make_dataset
    from keras_twostream.evaluation.adaptive_fusion import AdaptiveFusion
    from keras_twostream.models.tclsta import build_tclsta
    from keras_twostream.visualization.tclsta import (
        plot_attention,
        spatial_attention_maps,
        temporal_attention_curves,
    )

    started = time.time()
    output = Path(args.output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    epochs = args.epochs or (1 if args.quick else 15)
    T, L, size = args.num_segments, args.flow_length, args.image_size

    frames, train, test, classes = prepare_data(output, args.cache, args.quick, size, args.seed)
    say(
        f"{len(train)} training and {len(test)} test videos, {len(classes)} classes, T={T}, L={L}, {size}x{size}"
    )
    common = dict(
        root=frames, modalities=("rgb", "flow"), num_segments=T, flow_length=L, image_size=size
    )
    train_ds = make_dataset(train, training=True, batch_size=8, seed=args.seed, **common)
    train_eval_ds = make_dataset(
        train, training=False, batch_size=16, **common
    )  # AWL's training scores
    test_ds = make_dataset(test, training=False, batch_size=16, **common)

    rows, results, models = [], {}, {}
    for setting, switches in SETTINGS.items():
        keras.utils.set_random_seed(args.seed)
        # Without CLN, build with early fusion: its classifier sits behind a stop-gradient, so the
        # streams train exactly as with late fusion, and one model gives late, early and AWL.
        fusion = "late" if switches["collaborative"] else "early"
        model = build_tclsta(
            len(classes),
            backbone="tiny",
            image_size=size,
            num_segments=T,
            flow_length=L,
            fusion=fusion,
            cam_filters=64,
            lstm_units=64,
            collaborative_units=64,
            **switches,
        )
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        say(f"training {setting} for {epochs} epochs")
        tick = time.time()
        model.fit(train_ds, epochs=epochs, verbose=0)
        say(f"  trained in {time.time() - tick:.0f} s")

        train_scores, train_labels = scores_and_labels(model, train_eval_ds)
        test_scores, test_labels = scores_and_labels(model, test_ds)
        # The two scores that "fused" combines: the streams' heads, or their CLN heads with CLN.
        train_pair = dict(
            zip(
                ("spatial", "temporal"), (train_scores[n] for n in model.fused_outputs), strict=True
            )
        )
        test_pair = dict(
            zip(("spatial", "temporal"), (test_scores[n] for n in model.fused_outputs), strict=True)
        )
        awl = AdaptiveFusion().fit(train_pair, train_labels)
        awl_kept = AdaptiveFusion(min_weight=0.25).fit(train_pair, train_labels)
        row = {
            "frame": accuracy(test_pair["spatial"], test_labels),
            "flow": accuracy(test_pair["temporal"], test_labels),
            "late": accuracy(test_pair["spatial"] + test_pair["temporal"], test_labels),
            "early": accuracy(test_scores["fused"], test_labels) if fusion == "early" else None,
            "awl": float((awl.predict(test_pair) == test_labels).mean()),
            "awl_min_0.25": float((awl_kept.predict(test_pair) == test_labels).mean()),
            "awl_single_stream_classes": int((awl.weights_.max(axis=1) > 1 - 1e-9).sum()),
            "awl_frame_classes": [classes[j] for j in np.flatnonzero(awl.weights_[:, 0] > 0.5)],
        }
        if switches["collaborative"]:
            # The model's own "fused" output with the AWL weights (Eq. 14 inside the model).
            model.set_fusion_weights(awl.weights_)
            fused_in_model = scores_and_labels(model, test_ds)[0]["fused"]
            agree = int((fused_in_model.argmax(-1) == awl.predict(test_pair)).sum())
            say(
                f"  the model's 'fused' output with the AWL weights agrees with AdaptiveFusion.predict "
                f"on {agree} of {len(test_labels)} test videos"
            )
        results[setting] = row
        models[setting] = model
        early = "-" if row["early"] is None else f"{100 * row['early']:.1f}"
        rows.append(
            f"| {setting:<10} | {100 * row['frame']:5.1f} | {100 * row['flow']:5.1f} | {100 * row['late']:5.1f} "
            f"| {early:>5} | {100 * row['awl']:5.1f} | {100 * row['awl_min_0.25']:15.1f} |"
        )

    print()
    print(
        f"Top-1 accuracy (%) on the synthetic test split ({len(test)} videos, chance {100 / len(classes):.1f}%)."
    )
    print("'frame' / 'flow' are the streams' connection-network heads (their CLN heads with CLN);")
    print("late = average, early = classifier on concatenated features, AWL = Eqs. 10-14.")
    print()
    print("| setting    | frame |  flow |  late | early |   AWL | AWL (w >= 0.25) |")
    print("|------------|-------|-------|-------|-------|-------|-----------------|")
    print("\n".join(rows))
    print()
    for setting, row in results.items():
        print(
            f"{setting}: AWL (paper's program) gives {row['awl_single_stream_classes']} of {len(classes)} "
            f"classes to a single stream; frame stream for {row['awl_frame_classes'] or 'none'}"
        )

    # Figure 7: spatial attention over the frames and temporal attention over time.
    model = models["+STA+CLN"]
    inputs, labels = next(iter(test_ds))
    inputs = {k: np.asarray(v)[:3] for k, v in inputs.items()}
    for stream, key in (("spatial", "rgb"), ("temporal", "flow")):
        maps = spatial_attention_maps(model, inputs, stream=stream, size=size)
        curves = temporal_attention_curves(model, inputs, stream=stream)
        for b in range(len(maps)):
            path = output / f"attention_{stream}_{b}.png"
            plot_attention(
                inputs[key][b],
                maps[b],
                curves[b],
                path=path,
                title=f"{stream} stream, {classes[int(labels[b])]}",
            )
        say(f"attention plots: {output}/attention_{stream}_*.png")
    (output / "results.json").write_text(
        json.dumps({"accuracy": results, "classes": classes}, indent=2)
    )
    say(f"results: {output / 'results.json'}")
    say(f"done in {time.time() - started:.0f} s")
    return results


if __name__ == "__main__":
    main()
