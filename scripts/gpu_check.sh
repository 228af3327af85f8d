#!/usr/bin/env bash
# Every CUDA path of onet in one command, with one table of results.
#
#   bash scripts/gpu_check.sh             # a CUDA machine: install, then run (<= 5 minutes of checks)
#   bash scripts/gpu_check.sh --dry-run   # any machine: no install, every step small on the CPU
#   --work DIR                            # keep the runs, meshes and tables in DIR (default: removed)
#
# Install: when the python found (PYTHON, default python3) already has a CUDA torch,
# onet goes into that environment; otherwise into a new .gpu-venv, with the CUDA build
# of torch from the package index. Then `pip install -e .[gpu]` (NVIDIA Warp for GPU
# marching cubes), unless every package the checks need is there already (a rerun: nothing
# is installed; the checks run from this checkout). Offline: ONET_WHEELS=DIR installs the
# wheels in DIR (the project's dependencies, e.g. from `pip download -d DIR trimesh PyMCubes
# pykdtree fast-simplification embreex manifold3d rtree warp-lang==1.17.0` on a networked
# machine) and the project without fetching anything. Then scripts/gpu_check.py runs the
# checks and prints the table; the exit code is 1 when a check failed (rows: see
# scripts/gpu_check.py).
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
work_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run | --cpu) dry_run=1 ;;
        --work) work_args=(--work "$2"); shift ;;
        -h | --help) sed -n '2,/^[^#]/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
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

has_cuda_torch() {
    "$1" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2> /dev/null
}

# The third-party packages the checks import (onet itself runs from this checkout; Warp is optional:
# its row says when it is missing). Prints the missing ones; exit 1 if any.
missing_packages() {
    "$1" - << 'EOF'
import importlib.util, sys
missing = [m for m in ("torch", "numpy", "scipy", "trimesh", "mcubes", "skimage", "pykdtree", "yaml", "tqdm", "PIL",
                       "fast_simplification", "embreex", "manifold3d", "rtree") if importlib.util.find_spec(m) is None]
print(", ".join(missing))
sys.exit(1 if missing else 0)
EOF
}

if has_cuda_torch "$python"; then
    echo "gpu_check.sh: using $python's environment, which has CUDA torch" \
         "$("$python" -c 'import torch; print(torch.__version__)')"
    pip=("$python" -m pip)
else
    [ -x .gpu-venv/bin/python ] || "$python" -m venv --system-site-packages .gpu-venv
    python=.gpu-venv/bin/python
    pip=("$python" -m pip)
    if [ -z "${ONET_WHEELS:-}" ] && ! has_cuda_torch "$python"; then
        # the package index's Linux torch wheels are the CUDA builds
        echo "gpu_check.sh: installing the CUDA build of torch into .gpu-venv"
        "${pip[@]}" install --quiet --upgrade "torch>=2.4"
    fi
fi
if [ -n "${ONET_WHEELS:-}" ]; then
    echo "gpu_check.sh: offline install from $ONET_WHEELS"
    "${pip[@]}" install --quiet --no-index --no-deps "$ONET_WHEELS"/*.whl
    # --use-pep517: without it pip takes setuptools' legacy `develop`, which (setuptools >= 80)
    # calls pip again *with* build isolation, i.e. fetches setuptools from the index (seen offline
    # on an H200 machine). gpu_check.py also runs from the checkout itself, so a failed editable
    # install only costs the `onet` command, which no check needs.
    "${pip[@]}" install --quiet --no-index --no-deps --no-build-isolation --use-pep517 -e . \
        || echo "gpu_check.sh: editable install of onet failed offline; running from the checkout" >&2
elif missing_packages "$python" > /dev/null && has_cuda_torch "$python"; then
    # a rerun, or a machine set up before: pip would only reach for the index (on an offline
    # machine: retries that cost minutes of a lent GPU's time, then a failure)
    echo "gpu_check.sh: every package the checks need is installed already; nothing to install" \
         "(the checks run from this checkout)"
else
    echo "gpu_check.sh: installing onet (pip install -e .[gpu])"
    "${pip[@]}" install --quiet -e ".[gpu]" \
        || echo "gpu_check.sh: pip install -e .[gpu] failed (offline? see ONET_WHEELS in --help)" >&2
fi
if ! missing=$(missing_packages "$python"); then
    echo "gpu_check.sh: missing packages: $missing: install them or carry wheels (ONET_WHEELS, see --help)" >&2
    exit 1
fi

if ! has_cuda_torch "$python"; then
    # nvidia-smi sees a GPU: a CPU-only run here would pass every row and measure nothing
    echo "gpu_check.sh: torch $("$python" -c 'import torch; print(torch.__version__)') in $python sees no CUDA" \
         "GPU, although nvidia-smi does: install a CUDA build of torch that this driver supports" \
         "(or put its wheel in ONET_WHEELS) and run again" >&2
    exit 1
fi

export PYTHONUNBUFFERED=1
"$python" scripts/gpu_check.py ${work_args[@]+"${work_args[@]}"}
