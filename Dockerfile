# First version of the image for login and GPU nodes (containers get their own issue).
# The GPU image uses a CUDA build of PyTorch; the laptop/CI install pins the CPU wheel.
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv git openssh-client \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/orch
RUN python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

COPY pyproject.toml constraints.txt README.md ./
COPY orchestrator ./orchestrator
COPY trainables ./trainables
COPY cluster ./cluster
COPY conf ./conf

# CUDA PyTorch of the pinned release, then the project with the same locked versions
# (torch excluded from the lock: the CPU wheel there is for laptops and CI).
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu124 \
    && grep -v '^torch==' constraints.txt > /tmp/constraints-gpu.txt \
    && pip install --constraint /tmp/constraints-gpu.txt -e . \
    && (pip install kaolin -f https://nvidia-kaolin.s3.us-east-2.amazonaws.com/torch-2.13.0_cu124.html \
        || echo "kaolin wheel not available for this torch; pure-torch fallbacks are used")

ENTRYPOINT ["orch"]
CMD ["--help"]
