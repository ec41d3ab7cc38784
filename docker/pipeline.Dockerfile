# Beam SDK worker image for the bank and augment pipelines on Dataflow, Flink or Spark.
# Use it as --sdk_container_image (Dataflow) or --environment_type=DOCKER --environment_config=IMAGE
# (portable Flink/Spark runners). The Beam SDK version must equal the pinned apache-beam in requirements.txt.
#
#   docker build -f docker/pipeline.Dockerfile -t REGISTRY/stylepaste-pipeline:0.1.0 .
#
# torch==2.13.0 from PyPI on linux/x86_64 is the CUDA build (CUDA runtime libraries come as wheels), so the
# style aligners run on a GPU worker (Dataflow: --dataflow_service_options=
# "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver") and fall back to the CPU elsewhere.
FROM apache/beam_python3.11_sdk:2.77.0

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /opt/stylepaste

COPY requirements.txt requirements-cloud.txt ./
RUN pip install -r requirements.txt -r requirements-cloud.txt

COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY style_transfer ./style_transfer
COPY pipelines ./pipelines
COPY synthetic ./synthetic
COPY evaluation ./evaluation
COPY trainer ./trainer
COPY stylepaste ./stylepaste
RUN pip install --no-deps . && python -c "import stylepaste.cli, style_transfer, schemas"

# Keep the Beam boot entrypoint of the base image: the runner starts the SDK harness through it.
