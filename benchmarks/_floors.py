"""The floor most model benchmarks compare against: the two bare stream backbones."""

import keras
import numpy as np

from keras_twostream.backbones import get_backbone
from keras_twostream.layers import FoldSegments


def bare_backbones(backbone, image_size, flow_length, batch, rgb_segments=1, flow_segments=1):
    """Both backbones' pooled features on folded segments, a trivial loss, no heads, no fusion.

    Returns:
        `(model, targets)`: the compiled floor model (inputs `{"rgb", "flow"}` of shapes
        `(batch, rgb_segments, H, W, 3)` and `(batch, flow_segments, H, W, 2L)`) and zero targets
        for its two outputs.
    """
    rgb = keras.Input((rgb_segments, image_size, image_size, 3), name="rgb")
    flow = keras.Input((flow_segments, image_size, image_size, 2 * flow_length), name="flow")
    spatial = get_backbone(backbone, (image_size, image_size, 3), name="spatial_backbone")
    temporal = get_backbone(
        backbone,
        (image_size, image_size, 2 * flow_length),
        stream="temporal",
        name="temporal_backbone",
    )
    outputs = {
        "rgb": spatial(FoldSegments()(rgb))["features"],  # [B*K, D]
        "flow": temporal(FoldSegments()(flow))["features"],  # [B*K', D]
    }
    model = keras.Model({"rgb": rgb, "flow": flow}, outputs)
    model.compile(
        optimizer=keras.optimizers.SGD(1e-3, momentum=0.9), loss={"rgb": "mse", "flow": "mse"}
    )
    targets = {
        "rgb": np.zeros((batch * rgb_segments, outputs["rgb"].shape[-1]), "float32"),
        "flow": np.zeros((batch * flow_segments, outputs["flow"].shape[-1]), "float32"),
    }
    return model, targets
