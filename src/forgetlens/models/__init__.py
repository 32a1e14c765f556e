"""Model loading, the per-architecture head layout and the embedded base model.

The names below load lazily, so that importing a torch-free part of the package (``models.names``) does not
import torch."""

from __future__ import annotations

from typing import Any

__all__ = ["EMBEDDED", "LoadedModel", "load_model", "resolve_model_path"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from forgetlens.models import loading

        return getattr(loading, name)
    raise AttributeError(f"module 'forgetlens.models' has no attribute {name!r}")
