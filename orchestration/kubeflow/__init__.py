"""Kubeflow Pipelines: the pipeline compiled into a v2 spec (compile.py), and that spec run on this
machine as Kubeflow's launcher runs it (spec.py reads it, launcher.py runs it, records.py keeps its runs)."""
