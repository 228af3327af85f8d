#!/usr/bin/env bash
# Every CUDA path of onet in one command, with one table of results.
#
#   bash scripts/gpu_check.sh             # a CUDA machine: install, then run (<= 5 minutes of checks)
#   bash scripts/gpu_check.sh --dry-run   # any machine: no install, every step small on the CPU
#
# On a CUDA machine it makes a virtual environment .gpu-venv (it sees the system's
# packages, so a preinstalled CUDA torch is reused), installs the CUDA build of torch
# from the package index when no CUDA torch is there, then the project with pip
# (`pip install -e .[gpu]`: NVIDIA Warp for GPU marching cubes). Offline machines:
# ONET_WHEELS=DIR installs from a folder of wheels instead (pip --no-index).
# Then scripts/gpu_check.py runs the checks and prints the table; the exit code is
# 1 when a check failed. What each row means: the docstring of scripts/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
work_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run | --cpu) dry_run=1 ;;
        --work) work_args=(--work "$2"); shift ;;
        -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

python=${PYTHON:-python3}
if ! command -v "$python" > /dev/null; then
    echo "gpu_check.sh: $python not found (set PYTHON=...)" >&2
    exit 2
fi

if [ "$dry_run" = 1 ]; then
    echo "gpu_check.sh: dry run: nothing is installed; $python runs every step small on the CPU"
    exec "$python" scripts/gpu_check.py --dry-run ${work_args[@]+"${work_args[@]}"}
fi

if ! command -v nvidia-smi > /dev/null; then
    # installing a CUDA torch here would fetch gigabytes for nothing
    echo "gpu_check.sh: no NVIDIA driver here (no nvidia-smi): no CUDA; running the CPU dry run instead"
    exec "$python" scripts/gpu_check.py --dry-run ${work_args[@]+"${work_args[@]}"}
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

pip_install() {
    if [ -n "${ONET_WHEELS:-}" ]; then
        python -m pip install --quiet --no-index --find-links "$ONET_WHEELS" "$@"
    else
        python -m pip install --quiet "$@"
    fi
}

if [ ! -x .gpu-venv/bin/python ]; then
    "$python" -m venv --system-site-packages .gpu-venv
fi
# shellcheck disable=SC1091
. .gpu-venv/bin/activate
if python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2> /dev/null; then
    echo "gpu_check.sh: using the installed CUDA torch $(python -c 'import torch; print(torch.__version__)')"
else
    # the package index's Linux torch wheels are the CUDA builds
    echo "gpu_check.sh: installing the CUDA build of torch"
    pip_install --upgrade "torch>=2.4" || echo "gpu_check.sh: torch install failed; going on with what is there"
fi
echo "gpu_check.sh: installing onet (pip install -e .[gpu])"
if ! pip_install -e ".[gpu]"; then
    echo "gpu_check.sh: could not install every package (offline? set ONET_WHEELS=DIR);" \
         "trying the project alone and the packages already there"
    python -m pip install --quiet --no-deps --no-build-isolation -e . || true
fi
python - << 'EOF' || { echo "gpu_check.sh: missing packages above: install them or carry wheels (ONET_WHEELS)" >&2; exit 1; }
import importlib, sys
missing = [m for m in ("torch", "numpy", "scipy", "trimesh", "skimage", "pykdtree", "yaml", "tqdm", "PIL",
                       "fast_simplification", "embreex", "manifold3d", "rtree") if importlib.util.find_spec(m) is None]
if missing:
    print("missing:", ", ".join(missing))
    sys.exit(1)
EOF

export PYTHONUNBUFFERED=1
python scripts/gpu_check.py ${work_args[@]+"${work_args[@]}"}
