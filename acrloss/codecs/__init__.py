"""Target codecs: how landmarks are turned into model targets and model outputs back into points.

Public surface::

    from acrloss.codecs import HeatmapCodec, HeatmapDecodeLayer, decode, multilaterate
"""
from acrloss.codecs import heatmap as _heatmap
from acrloss.codecs.heatmap import *  # noqa: F401,F403  (the names in heatmap.__all__)

__all__ = list(_heatmap.__all__)
