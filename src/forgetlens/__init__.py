"""forgetlens: what fine-tuning does to a language model's circuits."""

__version__ = "0.1.0"
