"""Mistakes on the command line are reported before PyTorch is imported (in about a second, not
after tens of seconds of loading), as users meet them: a fresh process, offline."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Runs the command in a fresh interpreter and reports whether torch was imported by then.
PROBE = (
    "import sys; from napari_odise.cli import main; code = main(sys.argv[1:]); "
    "print('torch imported' if 'torch' in sys.modules else 'torch not imported'); sys.exit(code)"
)


def probe(*argv: str, home) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NAPARI_ODISE_HOME": str(home)}
    return subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize(
    "argv, status, message",
    [
        (["segment", "--sample", "astronaut", "--model", "tiny", "--vocab", "cocoo"], 2, "unknown preset 'cocoo'"),
        (["segment", "no-such-folder", "--model", "tiny"], 2, "not found: no-such-folder"),
        (["segment", "--sample", "astronot", "--model", "tiny"], 2, "unknown sample 'astronot'"),
        (["segment", "--sample", "astronaut", "--model", "tiny.pth"], 2, "no checkpoint at tiny.pth"),
        (["segment", "--sample", "astronaut", "--model", "tiny", "--shard", "4/4"], 2, "shard"),
        (["segment", "--sample", "astronaut", "--model", "tiny", "--short-edge", "0"], 2, "short_edge"),
        (["finetune", "no-such-dataset", "--base-model", "tiny"], 1, "no dataset folder at no-such-dataset"),
        (["finetune", ".", "--base-model", "tiny"], 1, "is not a napari-odise dataset"),
        (["finetune", "DATASET", "--base-model", "tiny", "--image-size", "100"], 1, "multiple of 64"),
        (["finetune", "DATASET", "--base-model", "tini"], 1, "unknown model 'tini'"),
    ],
)
def test_mistakes_are_refused_before_torch_loads(argv, status, message, tmp_path, monkeypatch):
    dataset = tmp_path / "dataset"
    (dataset / "annotations").mkdir(parents=True)
    (dataset / "annotations" / "panoptic.json").write_text("{}")
    argv = [str(dataset) if a == "DATASET" else a for a in argv]
    monkeypatch.chdir(tmp_path)
    done = probe(*argv, "--out", str(tmp_path / "out"), home=tmp_path / "home")
    assert done.returncode == status, done.stderr
    assert message in done.stderr
    assert "torch not imported" in done.stdout
    assert not (tmp_path / "out").exists()


def subcommand_parser(name: str):
    from napari_odise.cli import build_parser

    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices[name]


@pytest.mark.parametrize("name", ["segment", "relabel", "merge", "finetune", "export", "weights"])
def test_help_is_plain_text(name):
    text = subcommand_parser(name).format_help()
    assert "``" not in text and ":class:" not in text and ":mod:" not in text, text


@pytest.mark.parametrize("name", ["finetune", "relabel", "merge"])
def test_every_option_says_what_it_does_and_its_default(name):
    parser = subcommand_parser(name)
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{name} {action.option_strings or action.dest} has no help"
        if action.option_strings and not action.required:
            shown = parser._get_formatter()._get_help_string(action)
            assert "default" in shown, f"{name} {action.option_strings} does not show its default"
