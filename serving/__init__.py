"""Generation from a trained GPT: the KV-cached decoding loops, the serving SavedModel, nanoGPT's sample.py."""

# How an exported SavedModel's generate signature decodes (serving/export.py, the pipeline's serving_loop):
# "xla" in XLA-compiled functions, "graph" in TensorFlow's own kernels, "auto" by the size of its layers
# (serving/generate.py uses_xla).
SERVING_LOOPS = ("auto", "xla", "graph")
