"""When the output folder cannot be written (a file in the way, disk full), ``segment`` stops with
status 2 and one line naming the folder, not a traceback; what was done before is kept, listed
in batch_summary.json, and the next run resumes from it."""

import errno
import json
import os
import subprocess
import sys

import pytest
import skimage.data
from PIL import Image

from conftest import fast_tiny
from napari_odise import Predictor
from napari_odise.batch.output_errors import OutputWriteError, writing_into
from napari_odise.cli import main
from napari_odise.io.layout import DatasetLayout
from napari_odise.io.manifest import read_manifest
from napari_odise.models import ModelSpec
from napari_odise.pool import default_pool

FAST_ARGS = ["--model", "tiny", "--device", "cpu", "--short-edge", "128", "--max-size", "320", "--crop-size", "128"]


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    folder = tmp_path_factory.mktemp("samples")
    astronaut = skimage.data.astronaut()
    for index, name in enumerate(["a.png", "b.png", "c.png"]):
        Image.fromarray(astronaut[index * 40 : index * 40 + 96, 100:196]).save(folder / name)
    return folder


def test_an_output_path_under_a_file_exits_2_with_one_line(samples, tmp_path):
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a folder")
    out = in_the_way / "sub"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NAPARI_ODISE_HOME": str(tmp_path / "home")}
    command = [sys.executable, "-m", "napari_odise.cli", "segment", str(samples), "--out", str(out), "--quiet", *FAST_ARGS]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 2, finished.stderr
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in finished.stderr, finished.stderr
    assert lines[0].startswith(f"napari-odise: error: cannot write into {out}")
    assert "not a folder" in lines[0] and "--out" in lines[0]


def test_disk_full_during_the_coco_export_keeps_what_was_done(samples, tmp_path, capsys, monkeypatch):
    import napari_odise.io

    default_pool().put(ModelSpec("tiny", "cpu"), Predictor(fast_tiny(), device="cpu"))
    monkeypatch.setattr("napari_odise.batch.coco.CHUNK", 1)  # one dataset write per image
    real_export = napari_odise.io.export_results
    calls = []

    def full_at_the_third(*args, **kwargs):
        calls.append(args[3])
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_export(*args, **kwargs)

    monkeypatch.setattr(napari_odise.io, "export_results", full_at_the_third)
    out = tmp_path / "out"
    argv = ["segment", str(samples), "--out", str(out), "--coco", "--quiet", *FAST_ARGS]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0] == f"napari-odise: error: cannot write into {out}: no space left on the device: free some " \
        "space or use another --out, then run again to resume"
    summary = json.loads((out / "batch_summary.json").read_text())
    assert summary["done"] == ["a.png", "b.png"]  # c.png reached the store but not the dataset
    assert summary["stopped"] == lines[0].removeprefix("napari-odise: error: ")
    names = [image["name"] for image in read_manifest(DatasetLayout(out / "coco").manifest)["images"]]
    assert sorted(names) == ["a", "b"]

    monkeypatch.setattr(napari_odise.io, "export_results", real_export)  # space freed: resume
    assert main(argv) == 0
    assert "1 segmented, 2 already done, 0 failed (of 3)" in capsys.readouterr().out
    names = [image["name"] for image in read_manifest(DatasetLayout(out / "coco").manifest)["images"]]
    assert sorted(names) == ["a", "b", "c"]
    assert json.loads((out / "batch_summary.json").read_text())["stopped"] is None


def test_only_write_failures_become_refusals(tmp_path):
    with pytest.raises(OutputWriteError) as refused:
        with writing_into(tmp_path):
            raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x.json"))
    assert refused.value.errno == errno.EACCES and isinstance(refused.value, OSError)
    assert str(refused.value) == f"cannot write into {tmp_path} ({tmp_path / 'x.json'}): permission denied: use a " \
        "folder you can write to (--out)"
    with pytest.raises(ConnectionRefusedError):  # a cluster that does not answer is not the folder's fault
        with writing_into(tmp_path):
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")


def test_disk_full_while_writing_an_image_stops_the_batch(samples, tmp_path, capsys, monkeypatch):
    from napari_odise.batch.files import ImageFiles

    default_pool().put(ModelSpec("tiny", "cpu"), Predictor(fast_tiny(), device="cpu"))
    real_write = ImageFiles.write
    calls = []

    def full_at_the_second(self, key, *args, **kwargs):
        calls.append(key)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.out / "panoptic" / "b.png"))
        return real_write(self, key, *args, **kwargs)

    monkeypatch.setattr(ImageFiles, "write", full_at_the_second)
    out = tmp_path / "out"
    assert main(["segment", str(samples), "--out", str(out), "--quiet", *FAST_ARGS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and f"cannot write into {out}" in err and "no space" in err
    assert calls == ["a.png", "b.png"]  # stopped there: c.png was not tried (it would fail the same way)
    summary = json.loads((out / "batch_summary.json").read_text())
    assert summary["done"] == ["a.png"] and summary["failed"] == [] and "no space" in summary["stopped"]
    assert (out / "panoptic" / "a.png").is_file()
