# Trainer image: finetuning with torchrun (one or many GPUs, one or many nodes) and evaluation.
#
#   docker build -f docker/trainer.Dockerfile -t REGISTRY/stylepaste-trainer:0.1.0 .
#   docker run --gpus all --ipc=host -v /data:/data REGISTRY/stylepaste-trainer:0.1.0 \
#       torchrun --nproc_per_node 8 -m trainer.finetune --shards /data/corpus --checkpoint /data/cityscapes_best.pth \
#       --arch wrn38 --out /data/runs/ft
#
# torch==2.13.0 from PyPI on linux/x86_64 is the CUDA build; the host needs an NVIDIA driver and the
# NVIDIA container toolkit. --ipc=host (or a large --shm-size) is needed by DataLoader workers.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
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
RUN pip install --no-deps . && stylepaste --help >/dev/null

ENTRYPOINT []
CMD ["stylepaste", "--help"]
