"""forgetlens: what fine-tuning does to a language model's circuits."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``forgetlens.CircuitMonitor`` without importing transformers on ``import forgetlens``."""
    if name == "CircuitMonitor":
        from forgetlens.measure.monitor import CircuitMonitor

        return CircuitMonitor
    raise AttributeError(f"module 'forgetlens' has no attribute {name!r}")
