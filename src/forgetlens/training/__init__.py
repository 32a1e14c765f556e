"""Fine-tuning's parts: the data schedule, TRL SFT/GRPO wrappers, regularizers, checkpoints, the circuit monitor
(the run that uses them: ``pipeline/finetune.py``)."""
