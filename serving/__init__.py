"""Generation from a trained GPT: the KV-cached decoding loops, the serving SavedModel, nanoGPT's sample.py."""

# How an exported SavedModel's generate signature decodes (serving/export.py, the pipeline's serving_loop):
# "xla" in XLA-compiled functions, "graph" in TensorFlow's own kernels, "auto" the faster of the two
# measured at the export (serving/choose.py; serving_weights may be "auto" too).
AUTO = "auto"
SERVING_LOOPS = (AUTO, "xla", "graph")
