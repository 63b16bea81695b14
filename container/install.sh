#!/bin/sh
# Build steps shared by the Dockerfile and the Apptainer definition (one home for both recipes).
# Installs synthsr-nipype from SRC into the virtual environment VENV.
#
#   SRC               package source tree (default /opt/synthsr-nipype/src)
#   VENV              virtual environment to create (default /opt/synthsr-nipype/venv)
#   TORCH_VERSION     exact torch version (default 2.13.0)
#   TORCH_INDEX_URL   where torch comes from: https://download.pytorch.org/whl/cpu (CPU-only, about 0.2 GB) or
#                     empty for PyPI's default build (CUDA libraries included, several GB)
#   PIP_FIND_LINKS    optional folder of local wheels (offline builds)
#   PIP_CERT          optional CA bundle for pip (a TLS-inspecting proxy)
#   SKIP_APT=1        the system packages are already there (tests run this script outside a container)
set -eu
SRC=${SRC:-/opt/synthsr-nipype/src}
VENV=${VENV:-/opt/synthsr-nipype/venv}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TORCH_INDEX_URL=${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}

if [ "${SKIP_APT:-0}" != 1 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # python3 of Debian 12 is 3.11; graphviz draws --write-graph; libgomp1 is torch's OpenMP runtime
    apt-get install -y -q --no-install-recommends python3 python3-venv ca-certificates graphviz libgomp1
    rm -rf /var/lib/apt/lists/*
fi

if [ -n "${PIP_CERT:-}" ]; then export PIP_CERT; else unset PIP_CERT; fi
python3 -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --no-cache-dir --disable-pip-version-check -q "$@"; }
links=""
if [ -n "${PIP_FIND_LINKS:-}" ]; then links="--find-links $PIP_FIND_LINKS"; fi
index=""
# --extra-index-url keeps PyPI for torch's own dependencies (filelock, sympy, ...)
if [ -n "$TORCH_INDEX_URL" ]; then index="--index-url $TORCH_INDEX_URL --extra-index-url https://pypi.org/simple"; fi
# torch first and pinned: the package's open range would otherwise choose the build
# shellcheck disable=SC2086
pip install $index $links "torch==$TORCH_VERSION"
# shellcheck disable=SC2086
pip install $links "$SRC"
"$VENV/bin/synthsr-bids" --version
