# synthsr-bids, the SynthSR BIDS-App.  See README "Container" for building and running it.
#
# CPU-only image (default; torch from PyTorch's CPU index):
#   docker build -t synthsr-nipype:0.1.0 .
# CUDA image (PyPI's default torch build, which bundles the CUDA runtime; the host needs only the NVIDIA driver
# and the NVIDIA container toolkit; run with --gpus all):
#   docker build --build-arg TORCH_INDEX_URL= --build-arg IMAGE_TAG=synthsr-nipype:0.1.0-cuda \
#       -t synthsr-nipype:0.1.0-cuda .
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_FIND_LINKS=
ARG PIP_CERT=
# recorded in dataset_description.json GeneratedBy[].Container: pass the tag you build
ARG IMAGE_TAG=synthsr-nipype:0.1.0

COPY pyproject.toml setup.py README.md /opt/synthsr-nipype/src/
COPY synthsr_nipype /opt/synthsr-nipype/src/synthsr_nipype
COPY container/install.sh /opt/synthsr-nipype/install.sh
RUN TORCH_VERSION="$TORCH_VERSION" TORCH_INDEX_URL="$TORCH_INDEX_URL" PIP_FIND_LINKS="$PIP_FIND_LINKS" PIP_CERT="$PIP_CERT" \
    sh /opt/synthsr-nipype/install.sh

# any user may run it (docker run -u "$(id -u):$(id -g)" keeps output files yours): HOME and caches in /tmp
ENV PATH=/opt/synthsr-nipype/venv/bin:$PATH \
    LANG=C.UTF-8 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    SYNTHSR_CACHE_DIR=/tmp/synthsr-cache \
    SYNTHSR_MODELS_DIR=/models \
    SYNTHSR_CONTAINER_TYPE=docker \
    SYNTHSR_CONTAINER_TAG=${IMAGE_TAG}
WORKDIR /tmp
ENTRYPOINT ["synthsr-bids"]
