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


def held_out_loss(trainer) -> float:
    """The training objective on the held-out scenes, unaugmented, with fixed point samples."""
    images, labels, masks = [], [], []
    for name in trainer.data.val_names:
        sample = trainer.data.samples[name]
        images.append(torch.from_numpy(sample.image.transpose(2, 0, 1).copy()).float().div(255))
        sample_labels, sample_masks = trainer.data.targets(sample.label_map, sample.categories)
        labels.append(sample_labels)
        masks.append(sample_masks)
    saved, trainer.torch_rng = trainer.torch_rng, torch.Generator().manual_seed(0)
    trainer.model.eval()
    try:
        with torch.no_grad():
            return float(sum(trainer.losses(torch.stack(images), labels, masks).values()))
    finally:
        trainer.torch_rng = saved
        trainer.model.train()


def test_a_few_steps_learn_what_held_out_scenes_show(tmp_path):
    """Learning, fast: 15 steps on 6 synthetic scenes must cut the training loss by a third and
    the held-out scenes' loss clearly (observed: 44.4 -> 23.2 and 42.3 -> 32.0). The PQ a longer
    run reaches is measured by benchmarks/bench_finetune_learning.py."""
    data = tmp_path / "dataset"
    write_dataset(data, 8, size=SIZE)
    trainer = Finetuner(
        config(data, tmp_path / "run", steps=15, batch_size=2, lr=2e-3, warmup_steps=2, schedule="constant",
               loss=LossWeights(num_points=256)),
        model=tiny(),
    )
    assert len(trainer.data.val_names) == 2
    before = held_out_loss(trainer)
    path = trainer.run()
    after = held_out_loss(trainer)
    losses = [h["total"] for h in trainer.history]
    numbers = f"training loss {losses[0]:.2f} -> {np.mean(losses[-3:]):.2f}, held-out {before:.2f} -> {after:.2f}"
    print(numbers)
    assert np.mean(losses[-3:]) < 0.65 * losses[0], numbers
    assert after < 0.85 * before, numbers
    assert path.exists() and (tmp_path / "run" / "training.json").exists()


def test_resume_continues_the_same_schedule(dataset, tmp_path):
    small = dict(steps=6, checkpoint_every=3, batch_size=2, loss=LossWeights(num_points=256))
    straight = Finetuner(config(dataset, tmp_path / "a", **small), model=tiny())
    straight.run()
    interrupted = Finetuner(config(dataset, tmp_path / "b", **small), model=tiny())
    with pytest.raises(Cancelled):
        interrupted.run(should_stop=lambda: interrupted.step >= 3)
    resumed = Finetuner(config(dataset, tmp_path / "b", **small), model=tiny())
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


def test_cli_finetune_runs_resumes_and_segment_uses_its_vocabulary(dataset, tmp_path, monkeypatch, capsys):
    """finetune, resumed; then ``segment --model RUN/model.pth`` without --vocab takes the run's
    own vocabulary.json, and the folder records the model by its absolute path (given relative)."""
    import json

    from napari_odise.cli import main

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "cli"
    args = ["finetune", str(dataset), "--out", "cli", "--base-model", "tiny", "--image-size", "64",
            "--steps", "1", "--val-every", "0", "--num-points", "256", "--device", "cpu"]
    assert main(args) == 0
    assert "fine-tuned model" in capsys.readouterr().out
    assert (out / "model.pth").exists() and (out / "last.pt").exists()
    args[args.index("--steps") + 1] = "2"
    assert main(args) == 0  # resumes at step 1
    assert json.loads((out / "training.json").read_text())["steps"] == 2

    assert main(["segment", "--sample", "coffee", "--model", "cli/model.pth", "--device", "cpu", "--out", "out",
                 "--short-edge", "64", "--crop-size", "64", "--max-size", "128", "--quiet"]) == 0
    manifest = json.loads((tmp_path / "out" / "batch.json").read_text())
    assert manifest["vocabulary"] == VOCABULARY.name
    assert manifest["model"] == str((out / "model.pth").resolve())
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
