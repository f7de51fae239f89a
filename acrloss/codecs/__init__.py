"""Target codecs: how landmarks are turned into model targets and model outputs back into points.

Public surface::

    from acrloss.codecs import HeatmapCodec, HeatmapDecodeLayer, decode, multilaterate
"""
from acrloss.codecs.heatmap import (
    DECODERS,
    HeatmapCodec,
    HeatmapDecodeLayer,
    decode,
    encode_heatmaps,
    heatmap_to_input,
    input_to_heatmap,
    multilaterate,
)

__all__ = [
    "DECODERS",
    "HeatmapCodec",
    "HeatmapDecodeLayer",
    "decode",
    "encode_heatmaps",
    "heatmap_to_input",
    "input_to_heatmap",
    "multilaterate",
]
