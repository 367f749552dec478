#!/usr/bin/env bash
# GPU check for a bare CUDA machine: Python + PyTorch (with CUDA) and nothing else, no network.
#
# On the GPU machine, from the repository root:
#     bash benchmarks/gpu_check.sh WHEELS_DIR [gpu_check.py options]
# installs from WHEELS_DIR (no index) every wheel whose distribution is not installed yet (torch
# and what came with it are left alone), installs this project without dependencies, then runs
# benchmarks/gpu_check.py: the official-size model with random weights (nothing downloaded),
# images/s at 1024x1024 and 1024x1536, peak GPU memory and fp16/bf16-vs-fp32 agreement for fp32,
# fp16 and bf16, within an 8-minute budget (--budget 420 for the measuring part).
#
# Preparing WHEELS_DIR, on any machine with network (once; the wheels must match the GPU machine's
# Python version and platform, e.g. 3.11 and manylinux_2_28_x86_64):
#     bash benchmarks/gpu_check.sh --download WHEELS_DIR 3.11 [manylinux_2_28_x86_64]
# which runs, for the packages the model needs beside torch (MODEL_DEPENDENCIES below) at the
# versions pinned in .ci/constraints.txt:
#     pip download --no-deps --only-binary=:all: --implementation cp --python-version 3.11 \
#         --platform manylinux_2_28_x86_64 -d WHEELS_DIR -r <those pins>
#     pip wheel --no-deps -w WHEELS_DIR .          # this project, as a wheel
# torchvision is downloaded only with TORCHVISION_SPEC set (e.g. TORCHVISION_SPEC="torchvision==0.29.1"
# and TORCHVISION_INDEX=https://download.pytorch.org/whl/cu130): it must match the GPU machine's
# torch build; if that machine already has torchvision, leave it unset.
set -euo pipefail

PYTHON=${PYTHON:-python}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The model path's dependencies beside torch and its own (filelock, fsspec, jinja2, networkx,
# sympy, typing_extensions, triton, nvidia-*): the closure of diffusers, transformers,
# open_clip_torch, safetensors, numpy, numba, scipy, pandas, pillow, platformdirs, tqdm, tifffile.
MODEL_DEPENDENCIES="annotated-doc annotated-types anyio certifi charset-normalizer click diffusers
filelock fsspec ftfy h11 hf-xet httpcore2 httpx2 huggingface-hub idna importlib-metadata
lazy-importer llvmlite markdown-it-py mdurl numba numpy open-clip-torch packaging pandas pillow
platformdirs pydantic pydantic-core pygments python-dateutil pyyaml regex requests rich safetensors
scipy shellingham tifffile timm tokenizers tqdm transformers truststore typer typing-extensions
typing-inspection tzdata urllib3 wcwidth zipp"

normalise() { tr 'A-Z_.' 'a-z--'; }

pins() {  # the constraints' exact pins of MODEL_DEPENDENCIES
    local wanted=" $(echo $MODEL_DEPENDENCIES | normalise) "
    while IFS= read -r line; do
        local name=${line%%==*}
        [[ $wanted == *" $(echo "$name" | normalise) "* ]] && echo "$line"
    done < "$REPO/.ci/constraints.txt"
}

if [[ ${1:-} == --download ]]; then
    WHEELS=${2:?usage: gpu_check.sh --download WHEELS_DIR PYTHON_VERSION [PLATFORM]}
    PYVER=${3:?give the GPU machine\'s Python version, e.g. 3.11}
    PLATFORM=${4:-manylinux_2_28_x86_64}
    mkdir -p "$WHEELS"
    pins > "$WHEELS/requirements.txt"
    $PYTHON -m pip download --no-deps --only-binary=:all: --implementation cp --python-version "$PYVER" \
        --platform "$PLATFORM" --platform manylinux2014_x86_64 --platform any -d "$WHEELS" -r "$WHEELS/requirements.txt"
    if [[ -n ${TORCHVISION_SPEC:-} ]]; then
        $PYTHON -m pip download --no-deps --only-binary=:all: --implementation cp --python-version "$PYVER" \
            --platform "$PLATFORM" ${TORCHVISION_INDEX:+--index-url "$TORCHVISION_INDEX"} -d "$WHEELS" "$TORCHVISION_SPEC"
    fi
    $PYTHON -m pip wheel --no-deps -w "$WHEELS" "$REPO"
    echo "wheels for Python $PYVER on $PLATFORM are in $WHEELS; copy it beside the repository on the GPU machine"
    exit 0
fi

WHEELS=${1:?usage: gpu_check.sh WHEELS_DIR [gpu_check.py options] (or --download WHEELS_DIR PYTHON_VERSION [PLATFORM])}
shift
START=$(date +%s)
$PYTHON -c "import torch; assert torch.cuda.is_available(), 'PyTorch sees no CUDA GPU'; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))"

# every wheel of a distribution not installed yet (never replaces torch, or anything already there)
missing=()
for wheel in "$WHEELS"/*.whl; do
    name=$(basename "$wheel" | cut -d- -f1)
    if [[ $name == napari_odise ]]; then continue; fi
    if ! $PYTHON -c "import importlib.metadata as m, sys; m.distribution(sys.argv[1])" "$name" 2>/dev/null; then
        missing+=("$wheel")
    fi
done
if (( ${#missing[@]} )); then
    $PYTHON -m pip install --no-index --no-deps "${missing[@]}"
fi
project_wheel=$(ls "$WHEELS"/napari_odise-*.whl 2>/dev/null | head -n 1 || true)
if [[ -n $project_wheel ]]; then
    $PYTHON -m pip install --no-index --no-deps --force-reinstall "$project_wheel"
else  # no wheel prepared: from this checkout (needs setuptools >= 77 already installed)
    $PYTHON -m pip install --no-index --no-deps --no-build-isolation "$REPO"
fi
$PYTHON -c "import torchvision, open_clip, diffusers, transformers, napari_odise.predictor" \
    || { echo "a dependency is missing or does not import: see above (torchvision must match torch)"; exit 2; }
echo "installed in $(( $(date +%s) - START )) s"

cd "$REPO"
$PYTHON benchmarks/gpu_check.py --device cuda --budget 420 "$@"
echo "gpu_check.sh: $(( $(date +%s) - START )) s wall in all"
