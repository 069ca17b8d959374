"""The standard TFX Trainer's run_fn for GPT training (see run_fn.py)."""
