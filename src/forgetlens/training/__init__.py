"""Fine-tuning's parts: the data schedule, TRL SFT/GRPO wrappers, regularizers, checkpoints (the run that uses
them: ``pipeline/finetune.py``; the circuit monitor it attaches: ``measure/monitor.py``)."""
