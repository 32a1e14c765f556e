"""Measurements that run models and return per-prompt arrays (the anatomy of a tuned model's change)."""
