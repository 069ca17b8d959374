"""The TFX pipeline: configs.py holds the settings, pipeline.py wires the components."""
