"""What a model specification names, decided without importing torch (``forgetlens tasks`` and ``--help`` stay
fast)."""

from __future__ import annotations

from pathlib import Path

EMBEDDED = "embedded"
"""The ``--model`` name of the embedded test model."""
EMBEDDED_DIR = Path(__file__).parent / "embedded"
"""The embedded model's directory, shipped with the package."""


def is_embedded(model: str | None) -> bool:
    """Whether ``model`` names the embedded test model (None, ``embedded``, or its directory)."""
    if model is None or model == EMBEDDED:
        return True
    try:
        return Path(model).resolve() == EMBEDDED_DIR.resolve()
    except OSError:
        return False
