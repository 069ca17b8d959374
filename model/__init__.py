"""nanoGPT's model in TensorFlow, its tokenizers and GPT-2 checkpoints; knows nothing of TFX.

`from model import GPT, GPTConfig` works as in nanoGPT. TensorFlow is imported only when one of
them is first used, so that `model.tokenizer` and the command-line tools start quickly.
"""

import os

# oneDNN's CPU kernels (fused matmuls, softmax, transposes): TensorFlow turns them on by default
# only on CPUs with AVX-512 VNNI/BF16 or AMX, yet on an AVX2 CPU they make the shakespeare_char
# training step ~15% faster (BENCHMARKS.md). TensorFlow reads this once, when it loads, so it is
# set here, before any module of this package imports it; TF_ENABLE_ONEDNN_OPTS=0 turns it off.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__all__ = ["GPT", "GPTConfig"]


def __getattr__(name):
    if name in __all__:
        from model import model as _model

        return getattr(_model, name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")
