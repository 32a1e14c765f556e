"""Model loading, the per-architecture head layout and the embedded base model."""

from forgetlens.models.loading import EMBEDDED, LoadedModel, load_model, resolve_model_path

__all__ = ["EMBEDDED", "LoadedModel", "load_model", "resolve_model_path"]
