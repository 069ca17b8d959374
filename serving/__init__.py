"""Generation from a trained GPT: the KV-cached decoding loops, the serving SavedModel, nanoGPT's sample.py."""

# How an exported SavedModel's generate signature decodes (serving/export.py, the pipeline's serving_loop):
# "xla" in XLA-compiled functions, "graph" in TensorFlow's own kernels, "auto" the faster of the two
# measured at the export (serving/choose.py; serving_weights may be "auto" too).
AUTO = "auto"
SERVING_LOOPS = (AUTO, "xla", "graph")

# What an export chose and measured (serving/choose.py Choice.record), inside the SavedModel's
# directory: TF Serving ignores assets.extra/, and the Pusher's copy carries it along.
EXPORT_RECORD = "assets.extra/export.json"


def describe_export(record: dict) -> str:
    """An export's record in words: "bfloat16 weights, the graph loop (the fastest measured on ...)"."""
    text = f"{record['weights']} weights, the {record['loop']} loop"
    if not record.get("measured_tokens_per_s"):
        return text
    figures = ", ".join(f"{name} {rate:.1f}" for name, rate in record["measured_tokens_per_s"].items())
    return f"{text} (the fastest measured on {record['measured_on']}, tokens/s at batch 1: {figures})"
