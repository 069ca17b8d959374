"""Tests only: Python imports this module at the start of every process whose PYTHONPATH names this
folder (test_helpers.fault_injection.training_environment), and so arms the training kill point that
NANOGPT_TFX_KILL_AT names inside the training process, which no test can reach otherwise."""

import os

if os.environ.get("NANOGPT_TFX_KILL_AT", "").startswith("training:"):
    from test_helpers import fault_injection

    fault_injection.install_training()
