"""Fine-tuning: shared data schedule, TRL SFT/GRPO wrappers, checkpoints, the finetune run."""
