"""Everything that takes models and returns per-prompt arrays.

Behaviour, the base circuit and the base model measured against it, circuit damage, benchmarks, the anatomy of a
change, every model's own circuit.
"""
