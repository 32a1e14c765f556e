"""Pure functions of arrays and results: circuit statistics, DCV, matched and seed comparisons, summaries.

Nothing here runs a model or imports torch (``tests/project/test_layers.py`` checks it); what takes models and returns
per-prompt arrays lives in ``forgetlens.measure``.
"""
