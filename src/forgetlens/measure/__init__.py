"""Everything that takes models and returns per-prompt arrays.

Behaviour, the base circuit and the base model measured against it; a tuned model compared with the base: CMAP
exact (``cmap``), its cross-model patching (``cross_model``) and its first-order estimate (``first_order_cmap``),
circuit damage, the circuit monitor that watches training (``monitor``); benchmarks, the anatomy of a change, every
model's own circuit.
"""
