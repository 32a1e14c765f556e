"""Finetune-and-evaluate, audit, the whole study and its resource plan: the stages wired together."""
