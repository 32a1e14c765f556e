"""Behaviour and circuit metrics, and their statistics."""
