# The container image of the pipeline's components on Kubeflow Pipelines and Vertex AI
# (`runner.py compile --image=...`), and of the Vertex AI training job's workers.
#
#   docker build -t REGISTRY/nanogpt-tfx:TAG .                      # CPU
#   docker build --build-arg EXTRAS=gpu -t REGISTRY/nanogpt-tfx:TAG-gpu .   # + CUDA/cuDNN wheels
#
# It installs exactly the locked set (uv.lock), as scripts/setup.sh does on a workstation.
# The code lies in /pipeline (pipeline/configs.py's IMAGE_WORKDIR), importable from anywhere.
FROM python:3.10-slim-bookworm

ARG UV_VERSION=0.13.9
ARG EXTRAS=""
ENV PYTHONUNBUFFERED=1 \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_PYTHON_DOWNLOADS=never

RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /pipeline

# The locked dependencies first, in their own layer: code changes do not reinstall them.
COPY pyproject.toml uv.lock .python-version README.md ./
RUN uv sync --frozen --no-dev --no-install-project ${EXTRAS:+--extra ${EXTRAS}} --python python3.10

COPY core/ core/
COPY model/ model/
COPY training/ training/
COPY serving/ serving/
COPY components/ components/
COPY pipeline/ pipeline/
COPY orchestration/ orchestration/
COPY runner.py ./
RUN uv sync --frozen --no-dev ${EXTRAS:+--extra ${EXTRAS}} --python python3.10

# TFX's Kubeflow v2 entrypoint runs `python -m tfx.orchestration.kubeflow.v2.container...`:
# this python is the locked environment's.
# TF_ENABLE_ONEDNN_OPTS: model/__init__.py sets it for our own entry points, but here TFX's
# entrypoint loads TensorFlow before any of our modules.
ENV PATH=/pipeline/.venv/bin:$PATH \
    PYTHONPATH=/pipeline \
    TF_ENABLE_ONEDNN_OPTS=1
