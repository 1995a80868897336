# The one image for login and GPU nodes (README.md, "Containers"): `orch image build --variant cuda|cpu`.
#   VARIANT=cuda (default): NVIDIA's CUDA runtime base, torch's CUDA build, kaolin where NVIDIA publishes a
#                           wheel for that torch/CUDA pair (else the pure-torch fallbacks run).
#   VARIANT=cpu:            a Debian base and torch's CPU wheel, for laptops and CI.
# Two stages: the builder makes /opt/venv (torch, then the project with the locked versions of constraints.txt);
# the runtime stage is the same base with Python only, the venv copied in, and a non-root user. Nothing secret is
# passed in: a site's pip mirror is a pip.conf bound into the build (PIP_CONFIG_FILE below), in no layer.
ARG VARIANT=cuda
ARG CUDA_BASE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04
ARG CPU_BASE=debian:bookworm-slim

FROM ${CUDA_BASE} AS os-cuda
FROM ${CPU_BASE} AS os-cpu

# Python 3.11 on either base; builder and runtime share this stage, so the venv's interpreter path holds in both.
# DL3006: os-${VARIANT} is one of the two stages above (each a tagged base), not an image to tag.
# hadolint ignore=DL3006
FROM os-${VARIANT} AS os
ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 LANG=C.UTF-8
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Unpinned Debian/Ubuntu packages on purpose: they follow the pinned base's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

FROM os AS builder
ARG VARIANT
ARG TORCH_VERSION=2.13.0
ARG CUDA_TAG=cu124
# Where torch comes from; empty: PyTorch's own index for the variant (cpu, or CUDA_TAG).
ARG TORCH_INDEX=
# A site's pip mirror: a pip.conf bound into the build (`orch image build --volume CONF:/orch-build/pip.conf:ro
# --build-arg PIP_CONFIG_FILE=/orch-build/pip.conf`, README.md "Containers"). Unset: pip's defaults. An ARG of this
# stage only, and the file is no layer's: neither reaches the runtime image.
ARG PIP_CONFIG_FILE
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY orchestrator ./orchestrator
COPY trainables ./trainables
COPY cluster ./cluster
# torch first, from the variant's index; then the project with the same locked versions as laptops and CI
# (torch left out of the lock here: the lock's wheel is the CPU one); kaolin only where a wheel exists.
# DL3013: kaolin is left unpinned on purpose: NVIDIA's page for this torch/CUDA pair lists only the builds made for
# it, so the page pins it (everything else is pinned by torch==, the lock, or is this project).
# hadolint ignore=DL3013
RUN tag="$([ "$VARIANT" = cuda ] && echo "$CUDA_TAG" || echo cpu)" \
    && pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX:-https://download.pytorch.org/whl/$tag}" \
    && grep -v '^torch==' constraints.txt > /tmp/constraints.txt \
    && pip install --constraint /tmp/constraints.txt . \
    && if [ "$VARIANT" = cuda ]; then \
        pip install kaolin -f "https://nvidia-kaolin.s3.us-east-2.amazonaws.com/torch-${TORCH_VERSION}_${CUDA_TAG}.html" \
        || echo "kaolin: no wheel for torch ${TORCH_VERSION} ${CUDA_TAG}; the pure-torch fallbacks are used"; \
    fi

FROM os AS runtime
RUN useradd --create-home --uid 1000 --user-group --shell /bin/bash orch
# Owned by the image user, so a lab image built FROM this one can pip install into it (README.md, "Containers").
COPY --from=builder --chown=1000:1000 /opt/venv /opt/venv
COPY conf /opt/orch/conf
ENV PATH=/opt/venv/bin:$PATH
USER 1000:1000
WORKDIR /home/orch
ENTRYPOINT ["orch"]
CMD ["--help"]
