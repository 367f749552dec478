"""Start-up time of the official-size model: from the original pickles (first start, which also
writes the safetensors cache) and from the cache (every later start).

    python benchmarks/bench_weights_startup.py [--workdir DIR] [--variant official]

Random full-size weights are written once in the official file layouts (SD v1 ldm .ckpt in fp32,
OpenAI's CLIP TorchScript archive in fp16, the detectron2-style ODISE head): about 5.3 GB of
files plus about 5.5 GB of cache under --workdir. Needs about 12 GB of RAM.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=None, help="where to write the files (default: a temp dir, removed)")
    parser.add_argument("--variant", default="official", choices=["official", "official-caption"])
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="odise-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["NAPARI_ODISE_HOME"] = str(workdir / "home")

    from checkpoint_factory import odise_checkpoint, sd_ldm_state_dict, write_openai_clip_archive

    from napari_odise.model.build import build_odise
    from napari_odise.model.config import get_config
    from napari_odise.checkpoints.official_loading import load_from_files
    from napari_odise.model.sd_context import build_sd_text_encoder

    config = get_config(args.variant)
    files = {"sd": workdir / "sd-v1-3.ckpt", "odise": workdir / "odise.pth", "clip": workdir / "ViT-L-14-336px.pt"}
    if not all(p.exists() for p in files.values()):
        t = time.perf_counter()
        text_encoder = build_sd_text_encoder(config.sd_text)
        source = build_odise(config, sd_text_encoder=text_encoder)
        torch.save({"state_dict": sd_ldm_state_dict(source, text_encoder)}, files["sd"])
        torch.save(odise_checkpoint(source), files["odise"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            write_openai_clip_archive(source.clip, files["clip"])
        del source, text_encoder
        print(f"wrote random official-layout files in {time.perf_counter() - t:.1f} s")
    sizes = {k: p.stat().st_size / 2**30 for k, p in files.items()}
    print("files: " + ", ".join(f"{k} {v:.2f} GB" for k, v in sizes.items()))

    t = time.perf_counter()
    model = load_from_files(config, progress=False, **files)
    first = time.perf_counter() - t
    del model
    t = time.perf_counter()
    model = load_from_files(config, progress=False, **files)
    cached = time.perf_counter() - t
    cache_gb = sum(p.stat().st_size for p in (workdir / "home" / "cache").glob("*.safetensors")) / 2**30
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}")
    print(f"start from the original files (convert + write cache): {first:.1f} s")
    print(f"start from the safetensors cache ({cache_gb:.2f} GB): {cached:.1f} s")
    print(f"peak RSS: {rss_gb():.2f} GB")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
