"""Keep Triton from crashing napari on OpenGL drivers built on LLVM (Mesa llvmpipe, radeonsi).

Such drivers load libLLVM into the process when napari creates its canvas; importing Triton
afterwards (PyTorch does, on its way to ``torch._dynamo``, e.g. when transformers loads) segfaults
the whole viewer: two LLVMs in one process. napari-odise never uses Triton, so when libLLVM is
already loaded and Triton is not, the widgets make ``import triton`` fail cleanly instead; PyTorch
then treats Triton as absent. Processes that imported Triton first, or have no libLLVM, are left
alone.
"""

from __future__ import annotations

import sys
from pathlib import Path


def llvm_loaded() -> bool:
    try:
        return "libLLVM" in Path("/proc/self/maps").read_text()
    except OSError:  # not Linux
        return False


def guard_triton() -> bool:
    """Block ``import triton`` if importing it now would crash; returns whether it blocked."""
    if "triton" in sys.modules or not llvm_loaded():
        return False
    sys.modules["triton"] = None
    return True
