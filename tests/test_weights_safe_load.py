"""Reading checkpoints without executing code: containers, extras, TorchScript, malicious pickles."""

from __future__ import annotations

import io
import pickle
import sys
import types
import warnings
import zipfile

import numpy as np
import pytest
import torch

from napari_odise.weights import CorruptCheckpointError, UnsafeCheckpointError, load_checkpoint
from napari_odise.weights.torchscript import is_torchscript_archive


def small_state():
    return {
        "backbone.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4),
        "backbone.bias": torch.tensor([1.0, 2.0, 3.0]),
        "step": torch.tensor(7),
    }


def assert_same(got: dict, expected: dict):
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key


class ExecPayload:
    """Unpickling this runs ``exec`` (what a malicious checkpoint does)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


class SystemPayload:
    """Unpickling this runs a shell command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.system, (f"touch '{self.marker}'",)


def test_detectron2_checkpoint_unwraps_model(tmp_path):
    path = tmp_path / "odise.pth"
    torch.save({"model": small_state(), "iteration": 368749, "trainer": {"lr": 0.1}}, path)
    checkpoint = load_checkpoint(path)
    assert checkpoint.container == "model" and checkpoint.format == "pickle"
    assert checkpoint.extras == {"iteration": 368749}
    assert_same(checkpoint.state_dict, small_state())


def test_flat_state_dict_and_numpy_arrays(tmp_path):
    path = tmp_path / "flat.bin"
    torch.save({"a": torch.ones(2), "b": np.arange(3, dtype=np.int64), "name": "ignored"}, path)
    checkpoint = load_checkpoint(path)
    assert checkpoint.container is None
    assert torch.equal(checkpoint.state_dict["b"], torch.tensor([0, 1, 2]))
    assert checkpoint.skipped == ["name"]


def test_lightning_checkpoint_loads_without_lightning(tmp_path, monkeypatch):
    """sd-v1-x.ckpt files pickle a Lightning ModelCheckpoint (with numpy scalars) under
    "callbacks": it is replaced by an inert stand-in, Lightning is never imported."""
    path = tmp_path / "sd.ckpt"
    with monkeypatch.context() as patch:  # a fake pytorch_lightning, only while saving
        names = ["pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint"]
        for name in names:
            patch.setitem(sys.modules, name, types.ModuleType(name))
        model_checkpoint = type("ModelCheckpoint", (), {"__module__": names[-1]})
        sys.modules[names[-1]].ModelCheckpoint = model_checkpoint
        callback = model_checkpoint()
        callback.best_model_score = np.float64(0.25)
        callback.dirpath = "/logs/checkpoints"
        torch.save(
            {"state_dict": small_state(), "global_step": 470000, "callbacks": {model_checkpoint: callback}}, path
        )
    assert "pytorch_lightning" not in sys.modules
    checkpoint = load_checkpoint(path)
    assert checkpoint.container == "state_dict"
    assert checkpoint.extras == {"global_step": 470000}
    assert_same(checkpoint.state_dict, small_state())
    assert "pytorch_lightning" not in sys.modules


@pytest.mark.parametrize("payload", [ExecPayload, SystemPayload])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, payload):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": small_state(), "extra": payload(marker)}, path)

    with pytest.raises(UnsafeCheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "not a plain weights file" in message and "nothing from the file was executed" in message
    expected_global = "builtins.exec" if payload is ExecPayload else "system"
    assert expected_global in message
    assert not marker.exists()

    # control: the same file really runs its payload when loaded the unsafe way
    control_marker = tmp_path / "control"
    torch.save({"extra": payload(control_marker)}, tmp_path / "control.pth")
    torch.load(tmp_path / "control.pth", weights_only=False)
    assert control_marker.exists()


def test_malicious_plain_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"state_dict": {}, "x": ExecPayload(marker)}, protocol=2))
    with pytest.raises(UnsafeCheckpointError, match="nothing from the file was executed"):
        load_checkpoint(path)
    assert not marker.exists()


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 3)
        self.register_buffer("scale", torch.tensor(0.5))
        self.not_state = torch.ones(3)  # a plain tensor attribute: state_dict() skips it

    def forward(self, x):
        return self.proj(x) * self.scale + self.not_state


class TinyClip(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.Sequential(Block(), torch.nn.GELU(), torch.nn.Linear(3, 2))
        self.positional_embedding = torch.nn.Parameter(torch.randn(4).half())
        self.register_buffer("context_length", torch.tensor(77))

    def forward(self, x):
        return self.blocks(x + self.positional_embedding.float())


@pytest.mark.parametrize("export", ["script", "trace"])
def test_torchscript_archive_tensors_match_jit_load_without_running_it(tmp_path, export):
    torch.manual_seed(0)
    module = TinyClip().eval()
    path = tmp_path / "ViT-tiny.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if export == "script":
            scripted = torch.jit.script(module)
        else:
            scripted = torch.jit.trace(module, torch.randn(1, 4), check_trace=False)
        scripted.save(str(path))
        reference = torch.jit.load(str(path), map_location="cpu").state_dict()
    assert is_torchscript_archive(path)
    checkpoint = load_checkpoint(path)
    assert checkpoint.format == "torchscript" and checkpoint.container is None
    assert_same(checkpoint.state_dict, dict(reference))
    assert checkpoint.state_dict["positional_embedding"].dtype == torch.float16


def test_torchscript_archive_with_code_in_its_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "fake_clip.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("fake_clip/data.pkl", pickle.dumps(ExecPayload(marker), protocol=2))
        archive.writestr("fake_clip/constants.pkl", pickle.dumps((), protocol=2))
        archive.writestr("fake_clip/version", "3\n")
    assert is_torchscript_archive(path)
    with pytest.raises(UnsafeCheckpointError) as caught:
        load_checkpoint(path)
    assert "builtins.exec" in str(caught.value) and "nothing from the file was executed" in str(caught.value)
    assert not marker.exists()


def test_truncated_checkpoint_is_reported_as_damaged(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save({"model": small_state()}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpointError, match="truncated or damaged"):
        load_checkpoint(path)


def test_safetensors_file_with_metadata(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "unet.safetensors"
    save_file(small_state(), str(path), metadata={"origin": "test"})
    checkpoint = load_checkpoint(path)
    assert checkpoint.format == "safetensors" and checkpoint.metadata == {"origin": "test"}
    assert_same(dict(sorted(checkpoint.state_dict.items())), dict(sorted(small_state().items())))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nothing.pth")


def test_legacy_non_zip_checkpoint_loads_without_mmap(tmp_path):
    path = tmp_path / "old.pth"
    torch.save({"model": small_state()}, path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    checkpoint = load_checkpoint(path)
    assert checkpoint.container == "model"
    assert_same(checkpoint.state_dict, small_state())


class _Record:
    """Pickled as a persistent id: how data.pkl points at a raw tensor record."""


class _OversizedTensor:
    def __reduce__(self):  # claims 1000 floats from a 16-byte record
        return torch._utils._rebuild_tensor_v2, (_Record(), 0, (1000,), (1,), False, {})


def test_torchscript_tensor_larger_than_its_record_is_refused(tmp_path):
    class ArchivePickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", 4) if isinstance(obj, _Record) else None

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage deprecation
        ArchivePickler(buffer, protocol=2).dump({"weight": _OversizedTensor()})
    path = tmp_path / "oversized.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("oversized/data.pkl", buffer.getvalue())
        archive.writestr("oversized/constants.pkl", pickle.dumps((), protocol=2))
        archive.writestr("oversized/data/0", bytes(16))
    with pytest.raises(CorruptCheckpointError, match="does not fit its 16-byte record"):
        load_checkpoint(path)


def test_shapes_only_reading_reads_no_values(tmp_path):
    """What `weights use` checks: names, shapes and dtypes as meta tensors. A safetensors file is
    read from its header alone (this one is 4 GB of file-system hole), a pickle memory-mapped."""
    from checkpoint_factory import write_sparse_safetensors
    from napari_odise.weights.safe_load import load_checkpoint_shapes

    big = write_sparse_safetensors({"unet.weight": (1000, 1000, 1000), "scale": ()}, tmp_path / "big.safetensors")
    shapes = load_checkpoint_shapes(big)
    assert {k: (tuple(v.shape), v.dtype, v.device.type) for k, v in shapes.items()} == {
        "unet.weight": ((1000, 1000, 1000), torch.float32, "meta"),
        "scale": ((), torch.float32, "meta"),
    }
    torch.save({"model": small_state()}, tmp_path / "head.pth")
    shapes = load_checkpoint_shapes(tmp_path / "head.pth")
    assert {k: (tuple(v.shape), v.dtype, v.is_meta) for k, v in shapes.items()} == {
        "backbone.weight": ((3, 4), torch.float32, True),
        "backbone.bias": ((3,), torch.float32, True),
        "step": ((), torch.int64, True),
    }
    (tmp_path / "broken.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"not json")
    with pytest.raises(CorruptCheckpointError, match="not a valid safetensors file"):
        load_checkpoint_shapes(tmp_path / "broken.safetensors")


def test_legacy_pickle_refusal_names_the_global_without_torchs_advice(tmp_path):
    """torch's message advises weights_only=False (which would run the file) and some versions
    colour it: the refusal keeps only what the file wanted."""
    import os as os_module

    class Runs:
        def __reduce__(self):
            return (os_module.getcwd, ())

    path = tmp_path / "legacy.pt"
    torch.save({"w": Runs()}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "getcwd" in message and "nothing from the file was executed" in message
    assert "weights_only" not in message and "\x1b" not in message and "\n" not in message


def test_refusal_reason_drops_colour_codes_and_advice():
    from napari_odise.weights.safe_load import _reason

    error = pickle.UnpicklingError(
        "\x1b[1mWeights only load failed\x1b[0m. Re-run with `weights_only=False`.\n"
        "\x1b[31mUnsupported operand 149\x1b[0m\nCheck the documentation of torch.load"
    )
    assert _reason(error) == " (Unsupported operand 149)"
