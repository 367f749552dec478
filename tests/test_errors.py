"""One error hierarchy: every exception class the package defines derives from ``OdiseError``;
front ends show a ``UserError``'s message as it is (the CLI: one line, exit 2) and let anything
else surface as the bug it is."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys

import pytest

import napari_odise
from napari_odise import errors
from napari_odise.cli import main
from napari_odise.errors import Cancelled, InvalidInputError, MissingFileError, OdiseError, UserError


def package_exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in a module of the package, by qualified name (imports them
    all: a module that fails to import fails the test too)."""
    found = {}
    for module_info in pkgutil.walk_packages(napari_odise.__path__, "napari_odise."):
        if module_info.name.endswith("__main__"):  # running it would run the command
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__:
                found[f"{module.__name__}.{name}"] = value
    return found


def test_every_public_exception_class_is_an_odise_error():
    classes = package_exception_classes()
    public = {name: cls for name, cls in classes.items() if not name.rsplit(".", 1)[1].startswith("_")}
    assert "napari_odise.vocabulary.VocabularyError" in public and len(public) >= 20  # the walk sees them
    assert sorted(name for name, cls in public.items() if not issubclass(cls, OdiseError)) == []
    # private control flow (a cancelled job, an interrupted download) stays outside the family
    assert not issubclass(classes["napari_odise._widgets.job._Cancelled"], OdiseError)


def test_refusals_keep_their_builtin_bases_and_cancellations_are_cancelled():
    from napari_odise.batch.job import BatchCancelled
    from napari_odise.io.errors import DatasetError
    from napari_odise.train import finetune
    from napari_odise.vocabulary import UnknownCategoryError, VocabularyError
    from napari_odise.weights.errors import UnknownWeightError, WeightsError

    assert issubclass(VocabularyError, UserError) and issubclass(VocabularyError, ValueError)
    assert issubclass(UnknownCategoryError, VocabularyError) and issubclass(UnknownCategoryError, KeyError)
    assert issubclass(DatasetError, UserError) and issubclass(DatasetError, ValueError)
    assert issubclass(WeightsError, UserError) and issubclass(WeightsError, RuntimeError)
    assert issubclass(UnknownWeightError, UserError) and issubclass(UnknownWeightError, KeyError)
    assert issubclass(InvalidInputError, ValueError) and issubclass(MissingFileError, FileNotFoundError)
    assert issubclass(finetune.Cancelled, Cancelled) and issubclass(BatchCancelled, Cancelled)
    assert not issubclass(Cancelled, UserError)
    assert str(UnknownCategoryError("no category named 'car'")) == "no category named 'car'"  # no KeyError quotes


def test_former_value_errors_are_refusals_that_old_except_clauses_still_catch():
    from napari_odise._sample_data import load_sample_image
    from napari_odise.batch.discovery import parse_shard
    from napari_odise.vocabulary import Vocabulary

    for call, message in [
        (lambda: load_sample_image("nope"), "unknown sample 'nope'"),
        (lambda: parse_shard("2/2"), "shard '2/2'"),
        (lambda: Vocabulary.preset("coco").by_name("no such thing"), "no category named"),
    ]:
        with pytest.raises(UserError, match=message) as raised:
            call()
        assert isinstance(raised.value, (ValueError, KeyError))


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "napari_odise.cli", *argv], capture_output=True, text=True, timeout=300
    )


def test_cli_refusal_exits_2_with_the_message_and_no_traceback(tmp_path):
    process = run_cli("segment", str(tmp_path / "no-such-folder"), "--out", str(tmp_path / "out"))
    assert process.returncode == 2, process.stderr
    assert "napari-odise: error: " in process.stderr and "no-such-folder" in process.stderr
    assert "Traceback" not in process.stderr
    process = run_cli("merge", str(tmp_path), "--out", str(tmp_path / "merged"))
    assert process.returncode == 2, process.stderr
    assert process.stderr.strip() == f"napari-odise: error: {tmp_path} is not a batch output folder (no batch.json)"


def test_cli_reports_a_user_error_from_any_subcommand_in_one_place(monkeypatch, capsys, tmp_path):
    def refuse(sources, out):
        raise InvalidInputError("shards 0 and 1 overlap: merge them one at a time")

    monkeypatch.setattr("napari_odise.batch.merge_outputs", refuse)
    assert main(["merge", str(tmp_path), "--out", str(tmp_path / "merged")]) == 2
    assert capsys.readouterr().err == "napari-odise: error: shards 0 and 1 overlap: merge them one at a time\n"

    def cancelled(sources, out):
        raise errors.Cancelled("stopped: run the same command again to resume")

    monkeypatch.setattr("napari_odise.batch.merge_outputs", cancelled)
    assert main(["merge", str(tmp_path), "--out", str(tmp_path / "merged")]) == 130
    assert "run the same command again" in capsys.readouterr().err


@pytest.mark.parametrize("bug", [RuntimeError("CUDA kernel failed"), TypeError("unexpected keyword 'x'"), ValueError("bad shape")])
def test_a_bug_in_the_cli_propagates_instead_of_reading_as_a_refusal(monkeypatch, capsys, tmp_path, bug):
    def broken(sources, out):
        raise bug

    monkeypatch.setattr("napari_odise.batch.merge_outputs", broken)
    with pytest.raises(type(bug), match=str(bug)):
        main(["merge", str(tmp_path), "--out", str(tmp_path / "merged")])
    assert "error:" not in capsys.readouterr().err


def test_a_bug_in_the_export_cli_propagates(monkeypatch, tmp_path):
    from napari_odise.cli import export

    def broken(args):
        raise RuntimeError("an index went out of range")

    monkeypatch.setattr(export, "_convert_panoptic", broken)
    with pytest.raises(RuntimeError, match="out of range"):
        main(["export", "--panoptic-json", str(tmp_path / "x.json"), "--out", str(tmp_path / "dataset")])


def test_widgets_show_refusals_and_raise_bugs_again():
    from napari.utils.notifications import notification_manager

    from napari_odise._widgets.failures import refusal, report
    from napari_odise._widgets.job import JobError

    def wrapped(error: BaseException) -> JobError:
        try:
            raise JobError(str(error)) from error
        except JobError as job_error:
            return job_error

    refused = wrapped(MissingFileError("sd-v1-3.ckpt is missing: run `napari-odise weights download`"))
    assert isinstance(refusal(refused), MissingFileError)
    records = len(notification_manager.records)
    report(refused, "napari-odise")
    messages = [record.message for record in notification_manager.records[records:]]
    assert messages == ["napari-odise: sd-v1-3.ckpt is missing: run `napari-odise weights download`"]

    bug = wrapped(RuntimeError("shapes do not match"))
    assert refusal(bug) is None
    with pytest.raises(JobError, match="shapes do not match"):
        report(bug, "napari-odise")
    with pytest.raises(KeyError):
        report(KeyError("a bug's KeyError is not a refusal"), "Vocabulary")
    assert len(notification_manager.records) == records + 1
