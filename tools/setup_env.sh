#!/usr/bin/env bash
# Set up mmsam's development environment, idempotently.
#
#   bash tools/setup_env.sh            # creates ./.venv (or $MMSAM_VENV)
#
# What it does, in order (each step is skipped when already done):
#   1. checks python (3.8+), a C++20 compiler and pip;
#   2. creates the virtual environment;
#   3. installs torch 2.14.1 + torchvision 0.29.1, unless the environment already
#      has a torch (an existing torch, e.g. a CUDA build, is kept);
#   4. installs mmcv 2.1.0 with its compiled ops: from a wheel cached in
#      $MMSAM_CACHE/wheels (default ~/.cache/mmsam/wheels), or built once from the
#      sdist (C++20 patch, no build isolation, CUDA ops when nvcc + a CUDA torch
#      are present) and then cached;
#   5. installs mmengine, mmpretrain, mmdet, the test and optional extras, and
#      mmsam itself in editable mode;
#   6. writes a stamp so that a second run only verifies imports (seconds).
#
# Environment: MMSAM_VENV (venv path), MMSAM_CACHE (wheel cache),
# MMSAM_SYSTEM_SITE_PACKAGES=1 (create the venv on top of the system's packages,
# e.g. to reuse a preinstalled CUDA torch), MAX_JOBS (compile jobs, default nproc).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMSAM_VENV:-$REPO/.venv}"
CACHE="${MMSAM_CACHE:-$HOME/.cache/mmsam}"
TORCH_SPEC="torch==2.14.1 torchvision==0.29.1"
MMCV_VERSION="2.1.0"

die() { echo "setup_env: ERROR: $*" >&2; exit 1; }
log() { echo "setup_env: $*" >&2; }

# ---- 1. prerequisites --------------------------------------------------------
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || die "no '$PY' on PATH; install Python 3.8-3.12 or set PYTHON=/path/to/python"
"$PY" -c 'import sys; sys.exit(0 if (3, 8) <= sys.version_info[:2] <= (3, 12) else 1)' \
  || die "Python $("$PY" -V 2>&1) is not supported; mmcv 2.1.0 needs Python 3.8-3.12 (set PYTHON=python3.11)"
"$PY" -c 'import venv, ensurepip' 2>/dev/null \
  || die "Python's venv/ensurepip modules are missing; install them (Debian: apt-get install python3-venv)"

# ---- 2. the virtual environment ---------------------------------------------
VPY="$VENV/bin/python"
if [ -x "$VPY" ] && ! "$VPY" -c 'import pip' >/dev/null 2>&1; then
  log "the environment at $VENV is broken; recreating it"
  rm -rf "$VENV"
fi
if [ ! -x "$VPY" ]; then
  log "creating the virtual environment $VENV"
  if [ "${MMSAM_SYSTEM_SITE_PACKAGES:-0}" = "1" ]; then
    "$PY" -m venv --system-site-packages "$VENV"
  else
    "$PY" -m venv "$VENV"
  fi
fi
# pip, quiet, without the notes about this machine's absent local index folders
pipq() {
  local out rc=0
  out="$(mktemp)"
  "$VPY" -m pip --disable-pip-version-check -q "$@" >"$out" 2>&1 || rc=$?
  grep -v "^WARNING: Location 'file://" "$out" >&2 || true
  rm -f "$out"
  return "$rc"
}
PIP=(pipq)

# ---- the serve page's onnxruntime-web (npm) and the browser of its test (apt) ----
# before the fast path: node_modules lives in each clone, not in the venv
bash "$REPO/tools/setup_web.sh" \
  || die "tools/setup_web.sh failed (onnxruntime-web and chromium for mmsam serve and its browser test)"

# ---- fast path: nothing changed since the last complete set-up ---------------
stamp_key() {
  cat "$REPO/tools/setup_env.sh" "$REPO/setup.py" "$REPO"/requirements/*.txt | sha256sum | cut -c1-16
}
STAMP="$VENV/.mmsam-setup-stamp"
KEY="$(stamp_key)"
verify() {
  "$VPY" - <<'EOF'
import mmcv, mmcv.ops, mmengine, mmpretrain, mmdet, pycocotools, torch, torchvision  # noqa
import mmsam.registration  # noqa  (registers the modules)
EOF
}
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY" ] && verify >/dev/null 2>&1; then
  log "environment $VENV is up to date"
  exit 0
fi
rm -f "$STAMP"

# A C++ compiler able to build mmcv's ops against torch >= 2.10 (C++20).
CXX_BIN="${CXX:-g++}"
command -v "$CXX_BIN" >/dev/null \
  || die "no C++ compiler ('$CXX_BIN') found; mmcv's ops must be compiled (Debian: apt-get install g++)"
echo 'int main(){return 0;}' | "$CXX_BIN" -std=c++20 -x c++ - -o /dev/null 2>/dev/null \
  || die "'$CXX_BIN' cannot compile C++20, which torch's headers need; install g++ >= 10 or set CXX"

# ---- 3. torch ----------------------------------------------------------------
if "$VPY" -c 'import torch, torchvision' >/dev/null 2>&1; then
  log "keeping the installed torch $("$VPY" -c 'import torch; print(torch.__version__)')"
else
  log "installing $TORCH_SPEC (about a minute)"
  # shellcheck disable=SC2086
  "${PIP[@]}" install $TORCH_SPEC \
    || die "could not install $TORCH_SPEC; install a torch + torchvision pair into $VENV yourself and rerun"
fi
"$VPY" -c 'import torch, torchvision' \
  || die "torch/torchvision do not import in $VENV; remove $VENV and rerun"
"$VPY" -c 'import sys, torch; sys.exit(0 if int(torch.__version__.split(".")[0]) >= 2 else 1)' \
  || die "torch $("$VPY" -c 'import torch; print(torch.__version__)') in $VENV is too old; mmsam needs torch >= 2.0 (remove $VENV to get $TORCH_SPEC)"

# ---- 4. mmcv with ops --------------------------------------------------------
mmcv_ok() {
  "$VPY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" >/dev/null 2>&1
}
if ! mmcv_ok; then
  USE_CUDA="$("$VPY" -c 'import torch; print(int(torch.version.cuda is not None and torch.cuda.is_available()))')"
  if [ "$USE_CUDA" = "1" ] && ! command -v nvcc >/dev/null; then
    log "a CUDA torch and a GPU are present but nvcc is not: building CPU ops only"
    USE_CUDA=0
  fi
  TAG="$("$VPY" -c 'import sys, torch; v = torch.__version__.split("+")[0]; print("torch%s-py%d%d" % (v, *sys.version_info[:2]))')"
  if [ "$USE_CUDA" = "1" ]; then
    TAG="$TAG-cu$("$VPY" -c 'import torch; print(torch.version.cuda)')"
  else
    TAG="$TAG-cpu"
  fi
  WHEEL_DIR="$CACHE/wheels/mmcv-$MMCV_VERSION-$TAG"
  WHEEL="$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
  if [ -z "$WHEEL" ]; then
    log "building mmcv $MMCV_VERSION with ops ($TAG); this takes about 10 minutes on 2 cores"
    # mmcv's setup.py needs pkg_resources (setuptools < 70); restored afterwards.
    "${PIP[@]}" install -r "$REPO/requirements/build.txt"
    BUILD="$(mktemp -d)"
    trap 'rm -rf "$BUILD"' EXIT
    "${PIP[@]}" download --no-deps --no-binary :all: --no-build-isolation \
      -d "$BUILD" "mmcv==$MMCV_VERSION" \
      || die "could not download the mmcv $MMCV_VERSION source from the package index"
    tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    # torch >= 2.10's headers refuse C++17; mmcv 2.1.0 hard-codes it.
    sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
    if [ "$USE_CUDA" = "1" ]; then export FORCE_CUDA=1; fi
    (cd "$SRC" && export MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
      && pipq wheel --no-deps --no-build-isolation -w "$BUILD/dist" .) \
      || die "building mmcv $MMCV_VERSION failed (see the compiler output above)"
    mkdir -p "$WHEEL_DIR"
    for w in "$BUILD"/dist/mmcv-*.whl; do
      cp "$w" "$WHEEL_DIR/.tmp.$(basename "$w")"
      mv "$WHEEL_DIR/.tmp.$(basename "$w")" "$WHEEL_DIR/$(basename "$w")"  # atomic
    done
    WHEEL="$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl | head -n1)"
    log "cached $WHEEL"
    "${PIP[@]}" install "setuptools>=77"  # what torch itself declares
  else
    log "using the cached mmcv wheel $WHEEL"
  fi
  "${PIP[@]}" install --no-deps --force-reinstall "$WHEEL"
fi

# ---- 5. the rest of the stack and mmsam ---------------------------------------
log "installing mmengine, mmpretrain, mmdet, test and optional packages"
"${PIP[@]}" install -r "$REPO/requirements/mminstall.txt" -r "$REPO/requirements/runtime.txt" \
  -r "$REPO/requirements/tests.txt" -r "$REPO/requirements/optional.txt" \
  addict packaging pyyaml yapf
mmcv_ok || die "mmcv's compiled ops do not import after installing the stack"
"${PIP[@]}" install --no-deps --no-build-isolation -e "$REPO"

verify || die "the environment in $VENV does not import the stack; see the error above"
echo "$KEY" >"$STAMP"
log "environment $VENV is ready"
