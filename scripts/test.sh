#!/usr/bin/env bash
# Runs the whole test suite headless: napari's canvas needs an X server, so the tests run under
# Xvfb with Qt's xcb platform. Extra arguments go to pytest. Fails when no test was collected.
set -uo pipefail
cd "$(dirname "$0")/.."

export QT_QPA_PLATFORM=xcb
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export NAPARI_ODISE_HOME="${NAPARI_ODISE_HOME:-$(mktemp -d)}"

runner=()
if [ -z "${DISPLAY:-}" ]; then
    if ! command -v xvfb-run >/dev/null 2>&1; then
        echo "xvfb-run not found: run scripts/install.sh (it installs Xvfb) or set DISPLAY" >&2
        exit 1
    fi
    runner=(xvfb-run -a -s "-screen 0 1280x1024x24")
fi

"${runner[@]}" .venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: failing on purpose" >&2
    exit 1
fi
exit "$rc"
