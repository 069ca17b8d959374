"""TFX components that adapt the model package to TFX artifacts."""
