#!/usr/bin/env bash
# Installs napari-odise and everything it needs into ./.venv on a fresh Linux machine.
# - Debian/Ubuntu packages for napari's canvas without a screen (Xvfb), when apt is available;
# - the exact, tested versions from .ci/constraints.txt (torch 2.14.1 + torchvision 0.29.1 among
#   them: the pair that imports cleanly together).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
APT_PACKAGES="xvfb libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0 libxcb-cursor0"

if command -v apt-get >/dev/null 2>&1; then
    missing=""
    for p in $APT_PACKAGES; do
        dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "installing system packages:$missing"
        SUDO=""
        [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        $SUDO apt-get update -qq || true
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
    fi
else
    echo "apt-get not found: install Xvfb yourself to run the napari tests without a screen" >&2
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade "pip>=24"
.venv/bin/python -m pip install -q -c .ci/constraints.txt -e ".[test]"
echo "napari-odise installed in $(pwd)/.venv ($(.venv/bin/napari-odise --version))"
