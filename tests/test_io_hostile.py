"""A received dataset or COCO file cannot reach outside its folder (issue 15, items 1 and 2):
manifest paths and COCO ``file_name``s with ``..``, absolute paths or links out are refused,
naming the offending name, before anything is opened, copied or deleted."""

from __future__ import annotations

import json
import os

import pytest
from test_io_cli import main
from test_io_samples import LITERAL_MAP, literal_result, random_image

from napari_odise._reader import get_reader
from napari_odise._writer import SaveError, write_dataset
from napari_odise.io import DatasetError, export_result, open_dataset, read_instances, read_panoptic
from napari_odise.io.paths import UnsafePathError, inside

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture
def victim(tmp_path):
    """A file outside every dataset, which no hostile name may delete or read."""
    path = tmp_path / "victim.png"
    path.write_bytes(b"precious")
    return path


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "received"
    export_result(literal_result(), root, image=random_image(LITERAL_MAP.shape),
                  image_name="street")
    return root


def _edit(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _hostile_names(victim, root):
    """Traversal, absolute and link-out names for the victim, as a dataset would hold them."""
    link = root / "images" / "link.png"
    link.symlink_to(victim)
    return [os.path.relpath(victim, root), str(victim), "images/link.png"]


@pytest.mark.parametrize("key", ["image", "panoptic", "semantic"])
@pytest.mark.parametrize("kind", [0, 1, 2], ids=["dotdot", "absolute", "link"])
def test_export_overwrite_never_deletes_outside_the_dataset(dataset, victim, key, kind):
    name = _hostile_names(victim, dataset)[kind]
    _edit(dataset / "manifest.json", lambda m: m["images"][0].__setitem__(key, name))
    with pytest.raises(UnsafePathError, match=f"{key}: refused {name!r}"):
        export_result(literal_result(), dataset, image=random_image(LITERAL_MAP.shape),
                      image_name="street", overwrite=True)
    assert victim.read_bytes() == b"precious"
    with pytest.raises(UnsafePathError, match="leads outside"):
        open_dataset(dataset)


def test_napari_writer_refuses_a_hostile_dataset(dataset, victim):
    json_path = str(dataset / "annotations" / "panoptic.json")
    layers = [layer for layer in get_reader(json_path)(json_path) if layer[2] == "labels"]
    _edit(dataset / "manifest.json",
          lambda m: m["images"][0].__setitem__("panoptic", os.path.relpath(victim, dataset)))
    with pytest.raises(SaveError, match="leads outside") as caught:
        write_dataset(str(dataset), layers)  # the writer overwrites
    assert isinstance(caught.value.__cause__, UnsafePathError)
    assert victim.read_bytes() == b"precious"


def test_cli_export_overwrite_refuses_in_one_line(dataset, victim, tmp_path, capsys):
    source = tmp_path / "source"
    export_result(literal_result(), source, image=random_image(LITERAL_MAP.shape),
                  image_name="street")
    _edit(dataset / "manifest.json", lambda m: m["images"][0].__setitem__("image", str(victim)))
    code = main(["export", "--panoptic-json", str(source / "annotations/panoptic.json"),
                 "--out", str(dataset), "--overwrite"])
    err = capsys.readouterr().err
    assert code != 0 and str(victim) in err and "Traceback" not in err
    assert victim.read_bytes() == b"precious"


@pytest.mark.parametrize("which", ["images", "annotations"])
@pytest.mark.parametrize("kind", [0, 1, 2], ids=["dotdot", "absolute", "link"])
def test_coco_file_names_stay_inside_the_source_folder(dataset, victim, tmp_path, which, kind):
    json_path = dataset / "annotations" / "panoptic.json"
    name = _hostile_names(victim, dataset)[kind]
    folder = dataset / ("images" if which == "images" else "panoptic")
    if kind == 0:
        name = os.path.relpath(victim, folder)
    if kind == 2:  # a link beside the real files, pointing out
        (folder / "inner.png").symlink_to(victim)
        name = "inner.png"
    _edit(json_path, lambda d: d[which][0].__setitem__("file_name", name))
    with pytest.raises(UnsafePathError, match="refused"):
        read_panoptic(json_path)
    with pytest.raises(UnsafePathError):
        get_reader(str(json_path))(str(json_path))  # the napari reader
    code = main(["export", "--panoptic-json", str(json_path), "--out", str(tmp_path / "new")])
    assert code != 0
    assert not (tmp_path / "new" / "images").exists()


def test_etc_passwd_is_never_opened(dataset, tmp_path, capsys):
    json_path = dataset / "annotations" / "panoptic.json"
    _edit(json_path, lambda d: d["images"][0].__setitem__("file_name", "/etc/passwd"))
    code = main(["export", "--panoptic-json", str(json_path), "--out", str(tmp_path / "new")])
    err = capsys.readouterr().err
    assert code != 0 and "'/etc/passwd'" in err and "leads outside" in err
    assert not (tmp_path / "new").exists() or not any((tmp_path / "new").rglob("*passwd*"))


def test_instances_reader_refuses_traversal(dataset, victim):
    root = dataset.parent / "inst"
    export_result(literal_result(), root, image=random_image(LITERAL_MAP.shape),
                  image_name="street", instances=True)
    json_path = root / "annotations" / "instances.json"
    _edit(json_path, lambda d: d["images"][0].__setitem__("file_name", "../../victim.png"))
    with pytest.raises(UnsafePathError, match="'../../victim.png'"):
        read_instances(json_path)


def test_guard_accepts_names_inside_and_subfolders(tmp_path):
    (tmp_path / "sub").mkdir()
    assert inside(tmp_path, "sub/a.png", "test") == tmp_path / "sub" / "a.png"
    assert inside(tmp_path, "a..b.png", "test") == tmp_path / "a..b.png"
    for bad in ("..", "a/../../x", "C:\\x", "\\\\server\\x", "", None, "a\x00b"):
        with pytest.raises(UnsafePathError):
            inside(tmp_path, bad, "test")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(UnsafePathError):
        inside(tmp_path, "loop", "test")


@pytest.mark.parametrize(
    "target, change",
    [
        ("manifest.json", lambda m: m["images"][0].pop("image_id")),
        ("manifest.json", lambda m: m["images"].__setitem__(0, "street")),
        ("annotations/panoptic.json", lambda d: d["images"][0].pop("id")),
        ("annotations/panoptic.json", lambda d: d.__setitem__("categories", [5])),
    ],
)
def test_export_into_a_malformed_dataset_is_refused_not_a_traceback(dataset, target, change):
    _edit(dataset / target, change)
    before = {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file()}
    with pytest.raises(DatasetError):
        export_result(literal_result(), dataset, image=random_image(LITERAL_MAP.shape),
                      image_name="other")
    assert {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file()} == before
    if target == "manifest.json":
        with pytest.raises(DatasetError, match="damaged"):
            open_dataset(dataset)
