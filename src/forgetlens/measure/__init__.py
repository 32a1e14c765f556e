"""Everything that takes models and returns per-prompt arrays.

Behaviour, circuit damage, benchmarks, the anatomy of a change, every model's own circuit.
"""
