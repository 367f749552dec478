"""Replacing images in a dataset (`export --overwrite`, napari's writer) is one commit.

Killed before its journal is written, the dataset is byte for byte the old one; killed after, the
next reader or export finishes it, byte for byte as an uninterrupted replacement. Kills here are
real SIGKILLs of a child process at chosen points of the commit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_io_samples import LITERAL_MAP, literal_result, load_json, make_result, random_image, small_vocabulary

import napari_odise.io.contents as contents_module
from napari_odise.io import DatasetError, export_result, export_results, open_dataset
from napari_odise.io.journal import JOURNAL_NAME
from napari_odise.io.paths import UnsafePathError

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
TESTS = Path(__file__).parent

# The child builds the same results as these tests (fixed seeds), so bytes can be compared.
_CHILD = """
import os, signal, sys
from pathlib import Path
from test_io_samples import LITERAL_MAP, literal_result, make_result, random_image, small_vocabulary
from napari_odise.io import export_result, export_results

root, step, kill_at = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])

def changed():
    return make_result(LITERAL_MAP, {1: (3, 0.1, "edited"), 2: (1, 0.5, "model"),
                                     4: (3, 0.5, "model"), 7: (149, 0.5, "model")}, small_vocabulary())

if step == "first":
    export_results([literal_result(), literal_result()], root, image_names=["a", "b"],
                   images=[random_image(LITERAL_MAP.shape, seed=1), random_image(LITERAL_MAP.shape, seed=2)])
else:
    real = Path.replace
    done = {"renames": 0}
    def replace(self, target):
        if self.name.endswith(".staged.tmp"):
            if done["renames"] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            done["renames"] += 1
        return real(self, target)
    Path.replace = replace
    export_result(changed(), root, image_name="a", image=random_image(LITERAL_MAP.shape, seed=3),
                  overwrite=True, instances=step != "without-instances")
"""


def _child(root: Path, step: str, kill_at: int = -1) -> int:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", _CHILD, str(root), step, str(kill_at)], env=env,
                          capture_output=True, text=True, timeout=300)
    return done.returncode


def _changed():
    return make_result(LITERAL_MAP, {1: (3, 0.1, "edited"), 2: (1, 0.5, "model"),
                                     4: (3, 0.5, "model"), 7: (149, 0.5, "model")}, small_vocabulary())


def _files(root: Path) -> dict[str, bytes]:
    """Every visible file's bytes; the manifest without its export times."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts):
            files[path.relative_to(root).as_posix()] = path.read_bytes()
    manifest = json.loads(files.pop("manifest.json"))
    for record in manifest["images"]:
        record.pop("exported")
    manifest.pop("updated", None)
    manifest.pop("created", None)
    files["manifest.json"] = json.dumps(manifest, sort_keys=True).encode()
    return files


def _uninterrupted(tmp_path: Path, step: str = "replace") -> dict[str, bytes]:
    root = tmp_path / "uninterrupted"
    assert _child(root, "first") == 0 and _child(root, step) == 0
    return _files(root)


def test_a_kill_before_the_commit_leaves_the_old_dataset_byte_for_byte(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    assert _child(root, "first") == 0
    before = _files(root)
    real = contents_module.write_json

    def write_json(path, data, **kwargs):  # the staged manifest is the transaction's last file
        if "manifest.json" in path.name:
            raise KeyboardInterrupt("power cut")
        return real(path, data, **kwargs)

    monkeypatch.setattr(contents_module, "write_json", write_json)
    with pytest.raises(KeyboardInterrupt):
        export_result(_changed(), root, image_name="a", overwrite=True)
    monkeypatch.undo()
    assert _files(root) == before
    assert not (root / JOURNAL_NAME).exists()
    old = literal_result().segments["category_id"].tolist()
    assert old != [3, 1, 3, 149] and open_dataset(root).read("a").segments["category_id"].tolist() == old
    export_result(_changed(), root, image_name="a", overwrite=True)  # the re-run completes
    assert open_dataset(root).read("a").segments["category_id"].tolist() == [3, 1, 3, 149]
    assert not [p for p in root.rglob(".*.tmp")]


@pytest.mark.parametrize("kill_at", [0, 2, 5])
@pytest.mark.parametrize("finisher", ["reader", "export"])
def test_a_kill_after_the_commit_is_finished_as_an_uninterrupted_run(tmp_path, kill_at, finisher):
    root = tmp_path / "ds"
    assert _child(root, "first") == 0
    assert _child(root, "replace", kill_at) == -9  # SIGKILLed after kill_at renames
    assert (root / JOURNAL_NAME).is_file()
    if finisher == "reader":
        dataset = open_dataset(root)
        assert dataset.names == ["a", "b"] and dataset.problems == ()
        assert dataset.read("a").segments["category_id"].tolist() == [3, 1, 3, 149]
    else:  # another image appended: the pending replacement is finished first
        export_result(literal_result(), root, image_name="c")
        assert open_dataset(root).names == ["a", "b", "c"]
    assert not (root / JOURNAL_NAME).exists()
    if finisher == "reader":
        assert _files(root) == _uninterrupted(tmp_path)


def test_replacing_without_instances_drops_the_old_instances_and_keeps_ids(tmp_path):
    root = tmp_path / "ds"
    assert _child(root, "first") == 0
    ids_before = {i["file_name"]: i["id"] for i in load_json(root / "annotations" / "panoptic.json")["images"]}
    assert _child(root, "without-instances") == 0
    instances = load_json(root / "annotations" / "instances.json")
    assert {i["file_name"] for i in instances["images"]} == {"b.png"}
    assert {a["image_id"] for a in instances["annotations"]} == {ids_before["b.png"]}
    ids_after = {i["file_name"]: i["id"] for i in load_json(root / "annotations" / "panoptic.json")["images"]}
    assert ids_after == ids_before
    assert open_dataset(root).problems == ()


@pytest.mark.parametrize(
    "journal",
    [
        {"renames": [["panoptic/.a.png.0.staged.tmp", "../outside.txt"]], "remove": []},
        {"renames": [], "remove": ["../outside.txt"]},
        {"renames": [["../outside.txt", "panoptic/a.png"]], "remove": []},
        {"renames": [["panoptic/b.png", "panoptic/a.png"]], "remove": []},
    ],
    ids=["rename-out", "delete-out", "rename-in", "not-staged"],
)
def test_a_hostile_journal_is_refused_and_touches_nothing(tmp_path, journal):
    root = tmp_path / "ds"
    export_results([literal_result(), literal_result()], root, image_names=["a", "b"])
    outside = tmp_path / "outside.txt"
    outside.write_text("mine")
    (root / "panoptic" / ".a.png.0.staged.tmp").write_bytes(b"x")
    before = _files(root)
    (root / JOURNAL_NAME).write_text(json.dumps({"format": "napari-odise-export-journal", **journal}))
    with pytest.raises(DatasetError, match="refused") as raised:
        open_dataset(root)
    if "../" in json.dumps(journal):
        assert isinstance(raised.value, UnsafePathError)
    with pytest.raises(DatasetError, match="refused"):
        export_result(literal_result(), root, image_name="c")
    assert outside.read_text() == "mine" and _files(root) == before


def test_a_damaged_journal_says_how_to_keep_the_committed_dataset(tmp_path):
    root = tmp_path / "ds"
    export_result(literal_result(), root, image_name="a")
    (root / JOURNAL_NAME).write_text("{not json")
    with pytest.raises(DatasetError, match="is damaged.*move the file away"):
        open_dataset(root)
    (root / JOURNAL_NAME).unlink()
    assert open_dataset(root).names == ["a"]


def test_a_reader_during_a_running_replacement_is_told_to_wait(tmp_path):
    from napari_odise.io.layout import DatasetLayout
    from napari_odise.io.lock import dataset_lock

    root = tmp_path / "ds"
    export_result(literal_result(), root, image_name="a")
    (root / JOURNAL_NAME).write_text(json.dumps({"format": "napari-odise-export-journal", "renames": [],
                                                 "remove": []}))
    with dataset_lock(DatasetLayout(root).lock):
        with pytest.raises(DatasetError, match="replacing images .* right now: open it again"):
            open_dataset(root)
    assert open_dataset(root).names == ["a"] and not (root / JOURNAL_NAME).exists()
