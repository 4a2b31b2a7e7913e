"""The modality table: what each model input reads from a frame folder and how it is normalised.

Standard library only (extraction workers, `data/frames.py` and the `scan` command use it
without TensorFlow).

| modality     | reads                          | channels per snippet | normalisation              |
|--------------|--------------------------------|----------------------|----------------------------|
| `"rgb"`      | `img_*.jpg`, one frame         | 3                    | `rgb_normalization`        |
| `"flow"`     | `x_*.jpg`, `y_*.jpg`, L fields | 2L (`x1, y1, ...`)   | `flow_normalization`       |
| `"rgb_diff"` | `img_*.jpg`, D + 1 frames      | 3D                   | `rgb_normalization`, then  |
|              |                                |                      | differences of frames      |

`READS` is the first two columns as data; `needs_rgb`/`needs_flow` say which kinds of
frame files a set of modalities reads. The option vocabularies of the builders
(`FLOW_NORMALIZATIONS`, `FLOW_STACKINGS`, `AUGMENTATIONS`) live here too, with
MMAction2's flow normalisation constants.
"""

MODALITIES = ("rgb", "flow", "rgb_diff")
# The frame-file prefixes each modality reads (`keras_twostream.data.frames`).
READS = {"rgb": ("img_",), "flow": ("x_", "y_"), "rgb_diff": ("img_",)}
FLOW_NORMALIZATIONS = ("pixels", "bound", "mmaction")
# MMAction2's flow normalisation: mean 128, std 128 on the quantised 0..255 values
# (its TSN flow configs: `mean=[128, 128], std=[128, 128]`), what converted MMAction2 flow
# checkpoints expect (`keras_twostream.backbones.load_torch_weights`).
MMACTION2_FLOW_MEAN = 128.0
MMACTION2_FLOW_STD = 128.0
FLOW_STACKINGS = ("flow", "trajectory")  # Eq. (1) and Eq. (2) of the two-stream paper
AUGMENTATIONS = ("tsn", "two_stream")  # TSN's multi-scale crops; the two-stream paper's Sect. 5
ON_ERROR = ("raise", "skip")


def needs_rgb(modalities):
    """Whether `modalities` read RGB frames (`"rgb"` or `"rgb_diff"`).

    Example:

    >>> from keras_twostream.data.modalities import needs_rgb
    >>> needs_rgb(("flow",)), needs_rgb(("rgb_diff",))
    (False, True)
    """
    return "rgb" in modalities or "rgb_diff" in modalities


def needs_flow(modalities):
    """Whether `modalities` read flow fields (`"flow"`)."""
    return "flow" in modalities


def _check_modalities(modalities):
    if isinstance(modalities, str):
        modalities = (modalities,)
    modalities = tuple(modalities)
    unknown = [m for m in modalities if m not in MODALITIES]
    if not modalities or unknown or len(set(modalities)) != len(modalities):
        raise ValueError(
            f"Expected modalities to be distinct names among {MODALITIES}. "
            f"Received: modalities={modalities!r}"
        )
    return modalities
