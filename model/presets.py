"""The released GPT-2 models' shapes, GPT-2's vocabulary, and the precisions a GPT runs in: plain
constants, no TensorFlow, so that settings and command lines can name them before anything loads."""

# The four GPT-2 sizes that OpenAI released, as nanoGPT's from_pretrained knows them, and their context.
GPT2_SIZES = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),  # 124M params
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),  # 350M params
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),  # 774M params
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),  # 1558M params
}
GPT2_BLOCK_SIZE = 1024
GPT2_VOCAB_SIZE = 50257  # GPT-2's BPE vocabulary, the end-of-text token included
PADDED_VOCAB_SIZE = 50304  # GPT-2's vocabulary rounded up to a multiple of 64, as nanoGPT trains

# `dtype` (nanoGPT's option) -> the mixed-precision policy a GPT computes with (the names Keras uses).
POLICY_OF_DTYPE = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
DTYPES = tuple(POLICY_OF_DTYPE)
WEIGHT_DTYPES = ("float32", "bfloat16")  # the weights a GPT can decode with (serving/weights.py)
