"""What a model is fine-tuned and probed on: the science data, the synthetic comparisons, rewards, general prompts.

The prior tasks whose forgetting is measured live in ``forgetlens.tasks``; this package holds only the new tasks
a model is adapted to.
"""
