"""nanoGPT's model and training engine in TensorFlow; knows nothing of TFX.

`from model import GPT, GPTConfig` works as in nanoGPT. TensorFlow is imported only when one of
them is first used, so that `model.tokenizer` and the command-line tools start quickly.
"""

__all__ = ["GPT", "GPTConfig"]


def __getattr__(name):
    if name in __all__:
        from model import model as _model

        return getattr(_model, name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")
