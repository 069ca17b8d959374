"""The TokenizeText component (component.py). Importing this package imports neither TFX nor
TensorFlow, so Beam workers that unpickle its DoFns start quickly."""
