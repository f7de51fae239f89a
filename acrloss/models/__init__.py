"""Models: backbones and task heads."""
from acrloss.models.backbones import build_backbone
from acrloss.models.regressor import build_regressor, landmarks_from_output, load_model
from acrloss.models.heatmap import build_heatmap_model, set_decoder  # also registers the heatmap layers for loading
from acrloss.models.musica import build_musica  # also registers the MuSiCa layers for loading
from acrloss.models.ensemble import build_ensemble, is_ensemble  # also registers PointAverage for loading

__all__ = ["build_backbone", "build_regressor", "landmarks_from_output", "load_model", "build_heatmap_model", "set_decoder",
           "build_musica", "build_ensemble", "is_ensemble"]
