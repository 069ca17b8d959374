"""Where the pipeline runs: here with LocalDagRunner (local.py, recovery.py), or compiled for Kubeflow
Pipelines and Vertex AI, whose spec also runs here task by task (kubeflow/)."""
