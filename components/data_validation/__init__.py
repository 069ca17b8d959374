"""Data validation before training: TFX's SchemaGen with the comparators of the text's distributions,
a DataValidator that writes TFX's ExampleAnomalies, and an AnomalyGate that stops the run on them."""
