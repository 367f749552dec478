"""Fine-tuning for real: the tiny model learns synthetic scenes; resume; export loads as a model."""

from __future__ import annotations

import copy
import signal

import numpy as np
import pytest
import torch

from conftest import fast_tiny
from synthetic_scenes import VOCABULARY, write_dataset
from napari_odise.train.criterion import LossWeights
from napari_odise.train.finetune import Cancelled, FinetuneConfig, Finetuner, trainable_parameters

SIZE = 64


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic_dataset")
    write_dataset(folder, 24, size=SIZE)
    return folder


def config(dataset, output, **changes):
    values = dict(
        dataset=str(dataset), output=str(output), base_model="tiny", steps=100, batch_size=4,
        image_size=SIZE, min_scale=0.7, max_scale=1.4, lr=1e-3, grad_clip=1.0, warmup_steps=10,
        schedule="cosine", val_every=0, checkpoint_every=0, device="cpu", val_fraction=0.25,
        loss=LossWeights(num_points=1024),
    )
    values.update(changes)
    return FinetuneConfig(**values)


def tiny():
    return fast_tiny(short_edge=SIZE, crop_size=SIZE)


def pq_numbers(stats) -> dict:
    """Overall PQ, the things' PQ and their true positives: stuff alone can carry the overall PQ."""
    things = [c.id for c in VOCABULARY if c.isthing]
    return {"pq": round(stats.pq(), 3), "things_pq": round(stats.pq(things), 3), "things_tp": sum(stats.tp[c] for c in things)}


def test_finetuning_learns_held_out_scenes(dataset, tmp_path):
    trainer = Finetuner(config(dataset, tmp_path / "run"), model=tiny())
    assert len(trainer.data.val_names) == 6 and len(trainer.data.train_names) == 18
    random = pq_numbers(trainer.evaluate_stats())
    path = trainer.run()
    trained_stats = trainer.evaluate_stats()
    trained = pq_numbers(trained_stats)
    numbers = f"held-out, random weights {random}, after {trainer.step} steps {trained}"
    print(f"\n{numbers}; per category {trained_stats.per_category()}")
    assert random["pq"] < 0.05 and random["things_tp"] == 0, numbers
    assert trained["pq"] > 0.25, numbers
    # things, not just the two stuff bands: observed 2 of 14 held-out things found (PQ 0.12)
    assert trained["things_tp"] > random["things_tp"] and trained["things_pq"] > random["things_pq"] + 0.05, numbers
    assert path.exists() and (tmp_path / "run" / "training.json").exists()
    first, last = trainer.history[0]["total"], np.mean([h["total"] for h in trainer.history[-10:]])
    assert last < 0.7 * first


def test_resume_continues_the_same_schedule(dataset, tmp_path):
    straight = Finetuner(config(dataset, tmp_path / "a", steps=6, checkpoint_every=3), model=tiny())
    straight.run()
    interrupted = Finetuner(config(dataset, tmp_path / "b", steps=6, checkpoint_every=3), model=tiny())
    with pytest.raises(Cancelled):
        interrupted.run(should_stop=lambda: interrupted.step >= 3)
    resumed = Finetuner(config(dataset, tmp_path / "b", steps=6, checkpoint_every=3), model=tiny())
    assert resumed.step == 3
    resumed.run()
    for key, value in straight.model.trainable_state_dict().items():
        torch.testing.assert_close(resumed.model.trainable_state_dict()[key], value, rtol=0, atol=0)
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in straight.history]
    assert [h["total"] for h in resumed.history] == [h["total"] for h in straight.history]


def test_export_is_official_layout_and_loads_like_a_model(dataset, tmp_path):
    from napari_odise import Predictor
    from napari_odise.checkpoints.key_mapping import ours_to_official

    trainer = Finetuner(config(dataset, tmp_path / "run", steps=2), model=tiny())
    path = trainer.run()
    saved = torch.load(path, weights_only=True)["model"]
    expected = {ours_to_official(k, "label") for k in trainer.model.trainable_state_dict()} | {"criterion.empty_weight"}
    assert set(saved) == expected
    assert saved["criterion.empty_weight"].shape == (134,)
    predictor = Predictor.from_pretrained(path, device="cpu")
    for key, value in trainer.model.trainable_state_dict().items():
        assert torch.equal(predictor.model.trainable_state_dict()[key], value.cpu())
    from napari_odise.vocabulary import Vocabulary

    assert Vocabulary.load(tmp_path / "run" / "vocabulary.json") == VOCABULARY


def test_caption_model_is_refused_with_a_reason(dataset, tmp_path):
    with pytest.raises(ValueError, match="caption model"):
        Finetuner(config(dataset, tmp_path / "c"), model=fast_tiny("tiny-caption"))


def test_cli_finetune_runs_and_resumes(dataset, tmp_path, capsys):
    from napari_odise.cli import main

    out = tmp_path / "cli"
    args = ["finetune", str(dataset), "--out", str(out), "--base-model", "tiny", "--image-size", "64",
            "--steps", "1", "--val-every", "0", "--num-points", "256", "--device", "cpu"]
    assert main(args) == 0
    assert "fine-tuned model" in capsys.readouterr().out
    assert (out / "model.pth").exists() and (out / "last.pt").exists()
    args[args.index("--steps") + 1] = "2"
    assert main(args) == 0  # resumes at step 1
    import json

    assert json.loads((out / "training.json").read_text())["steps"] == 2


def test_segment_with_a_fine_tuned_model_uses_its_vocabulary(dataset, tmp_path, monkeypatch, capsys):
    """``--model RUN/model.pth`` without --vocab: the run's own vocabulary.json, and the folder
    records the model by its absolute path (given here relative to the working folder)."""
    import json

    from napari_odise.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["finetune", str(dataset), "--out", "run", "--base-model", "tiny", "--image-size", "64", "--steps", "1",
                 "--val-every", "0", "--num-points", "256", "--device", "cpu"]) == 0
    assert main(["segment", "--sample", "coffee", "--model", "run/model.pth", "--device", "cpu", "--out", "out",
                 "--short-edge", "64", "--crop-size", "64", "--max-size", "128", "--quiet"]) == 0
    manifest = json.loads((tmp_path / "out" / "batch.json").read_text())
    assert manifest["vocabulary"] == VOCABULARY.name
    assert manifest["model"] == str((tmp_path / "run" / "model.pth").resolve())
    annotation = json.loads((tmp_path / "out" / "segments" / "coffee.json").read_text())
    names = {category.name for category in VOCABULARY}
    assert all(segment["category"] in names for segment in annotation["segments_info"])


def trainable_gradients(model) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.{name}": p.grad.clone()
        for prefix, module in model.trainable_modules().items()
        for name, p in module.named_parameters()
        if p.grad is not None
    }


def test_gradient_checkpointing_gives_the_same_gradients(dataset, tmp_path, monkeypatch):
    import torch.utils.checkpoint

    trainer = Finetuner(config(dataset, tmp_path / "gc", batch_size=1), model=tiny())
    batch = trainer.data.batch(1, trainer.jitter, np.random.default_rng(0))
    calls = []
    original = torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", lambda *a, **k: calls.append(1) or original(*a, **k))

    def gradients(checkpointing: bool) -> dict[str, torch.Tensor]:
        trainer.model.gradient_checkpointing = checkpointing
        trainer.torch_rng.manual_seed(0)  # the same sampled points both times
        trainer.model.train().zero_grad(set_to_none=True)
        sum(trainer.losses(*batch).values()).backward()
        return trainable_gradients(trainer.model)

    plain = gradients(False)
    assert not calls
    checkpointed = gradients(True)
    assert calls  # the UNet really ran under checkpoint
    assert set(checkpointed) == set(plain) and len(plain) == len(trainable_parameters(trainer.model))
    assert any(g.abs().sum() > 0 for k, g in plain.items() if k.startswith("captioner."))  # through the UNet
    for key, value in plain.items():
        torch.testing.assert_close(checkpointed[key], value, rtol=1e-5, atol=1e-8, msg=key)


# --- Ctrl+C: the checkpoint it leaves is a step boundary ------------------------------------------
def cli_args(dataset, out, checkpoint_every: int) -> list[str]:
    return ["finetune", str(dataset), "--out", str(out), "--base-model", "tiny", "--image-size", "64",
            "--steps", "4", "--batch-size", "2", "--val-every", "0", "--checkpoint-every", str(checkpoint_every),
            "--num-points", "256", "--device", "cpu"]


@pytest.fixture(scope="module")
def cli_tiny():
    """The tiny model with 64-pixel crops (the preset's 512 would make each step ~10x slower)."""
    return tiny()


def copies_for_the_cli(patch, model) -> None:
    """The CLI's ``--base-model tiny`` gets a fresh copy of ``model`` (the same initial weights)."""
    patch.setattr("napari_odise.train.finetune.load_model", lambda name: copy.deepcopy(model))


@pytest.fixture(scope="module")
def uninterrupted(dataset, tmp_path_factory, cli_tiny):
    from napari_odise.cli import main

    out = tmp_path_factory.mktemp("uninterrupted")
    with pytest.MonkeyPatch.context() as patch:
        copies_for_the_cli(patch, cli_tiny)
        assert main(cli_args(dataset, out, 0)) == 0
    return out


def ctrl_c():
    signal.raise_signal(signal.SIGINT)


def raise_interrupt():
    raise KeyboardInterrupt


def interrupt_third_call(monkeypatch, cls, name: str, action, after: bool) -> None:
    """``cls.name`` runs ``action`` on its third call, before or after doing its work."""
    original, calls = getattr(cls, name), []

    def wrapper(self, *args):
        calls.append(1)
        if len(calls) == 3 and not after:
            action()
        result = original(self, *args)
        if len(calls) == 3 and after:
            action()
        return result

    monkeypatch.setattr(cls, name, wrapper)


@pytest.mark.parametrize(
    "target, action, checkpoint_every, saved_step",
    [
        ("forward", ctrl_c, 0, 3),  # deferred: the third step finishes, then the run stops
        ("forward", raise_interrupt, 0, 2),  # before the update: rolled back to the step's start
        ("update", raise_interrupt, 2, 2),  # weights updated, step not done: the step-2 checkpoint stays
    ],
    ids=["ctrl-c-in-forward", "interrupt-in-forward", "interrupt-in-update"],
)
def test_interrupt_inside_a_step_resumes_like_an_uninterrupted_run(
    dataset, tmp_path, monkeypatch, cli_tiny, uninterrupted, target, action, checkpoint_every, saved_step
):
    import json

    from napari_odise.cli import main

    out, handler = tmp_path / "stopped", signal.getsignal(signal.SIGINT)
    copies_for_the_cli(monkeypatch, cli_tiny)
    with pytest.MonkeyPatch.context() as patch:
        if target == "forward":
            interrupt_third_call(patch, Finetuner, "losses", action, after=False)
        else:
            interrupt_third_call(patch, torch.amp.GradScaler, "update", action, after=True)
        assert main(cli_args(dataset, out, checkpoint_every)) == 130
    assert torch.load(out / "last.pt", weights_only=True)["step"] == saved_step
    assert signal.getsignal(signal.SIGINT) is handler  # the CLI put the previous handler back
    assert main(cli_args(dataset, out, checkpoint_every)) == 0
    expected = torch.load(uninterrupted / "model.pth", weights_only=True)["model"]
    resumed = torch.load(out / "model.pth", weights_only=True)["model"]
    for key, value in expected.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=0, msg=key)
    history = [json.loads((path / "training.json").read_text())["history"] for path in (uninterrupted, out)]
    assert history[1] == history[0] and len(history[0]) == 4
