"""benchmarks/gpu_check.py, the script gpu_check.sh runs on a GPU machine, in its CPU smoke mode:
it must run end to end and report speed and half-vs-float32 agreement with real numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_smoke_run_on_cpu(tmp_path):
    report_file = tmp_path / "report.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NAPARI_ODISE_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--sizes", "64x64", "--repeats", "1", "--json", str(report_file)],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "bf16:" in done.stdout and "vs fp32: mask logits max rel diff" in done.stdout
    report = json.loads(report_file.read_text())
    assert report["model"] == "tiny" and [r["precision"] for r in report["reports"]] == ["fp32", "bf16"]
    fp32, bf16 = (r["sizes"]["64x64"] for r in report["reports"])
    assert fp32["images_per_s"] > 0 and fp32["timed_runs"] == 1
    assert "mask_logits_max_rel_diff" not in fp32
    # tolerances of tests/test_precision.py (tiny random weights)
    assert 0 < bf16["mask_logits_max_rel_diff"] <= 0.25
    assert bf16["class_probabilities_max_rel_diff"] <= 0.25
    assert bf16["equal_panoptic_pixels"] >= 0.9


def test_gpu_check_refuses_a_missing_gpu_in_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        return
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cuda"], capture_output=True, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )
    assert done.returncode == 2 and "no CUDA GPU" in done.stderr
