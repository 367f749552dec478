import json
from importlib import resources

import numpy as np
import pytest

from napari_odise.colors import distinct_colors, instance_shade
from napari_odise.vocabulary import (
    Category,
    Vocabulary,
    VocabularyError,
    coco_training_synonyms,
)

PRESET_SIZES = {
    "coco": 133,
    "coco_panoptic_133": 133,
    "ade20k": 150,
    "ade20k-150": 150,
    "ade20k-847": 847,
    "lvis": 1203,
    "pascal-context-59": 59,
    "pascal-context-459": 459,
    "pascal-voc": 21,
}


def _raw(file_name):
    text = (resources.files("napari_odise") / "presets" / file_name).read_text("utf-8")
    return json.loads(text)["categories"]


def _small():
    return Vocabulary.parse("traffic cone: cone, cones\nroad: asphalt, tarmac (stuff)\ncell")


# --- presets --------------------------------------------------------------------------------
@pytest.mark.parametrize("name,size", PRESET_SIZES.items())
def test_preset_sizes(name, size):
    vocabulary = Vocabulary.preset(name)
    assert len(vocabulary) == size
    assert len(set(vocabulary.ids)) == size


def test_presets_keep_dataset_ids_names_synonyms_and_colors():
    coco = Vocabulary.preset("coco")
    assert coco[0] == Category(1, "person", tuple(_raw("coco_panoptic_133.json")[0]["synonyms"]),
                               True, (220, 20, 60))
    door = coco.by_name("door-stuff")
    assert (door.id, door.synonyms, door.isthing) == (112, ("door", "doors"), False)
    assert Vocabulary.preset("ade20k").by_id(0).name == "wall"
    assert Vocabulary.preset("ade20k-847").ids == tuple(range(1, 848))
    assert Vocabulary.preset("pascal-voc").by_id(0).name == "background"


def test_unknown_preset_lists_valid_names():
    with pytest.raises(VocabularyError) as error:
        Vocabulary.preset("imagenet")
    for name in Vocabulary.preset_names():
        assert name in str(error.value)
    assert Vocabulary.preset_names() == [
        "coco", "ade20k", "ade20k-847", "lvis", "pascal-context-59", "pascal-context-459",
        "pascal-voc", "demo",
    ]


def test_demo_is_coco_ade_lvis_deduplicated_by_name_and_synonyms():
    expected_names = []
    seen = set()
    for file_name in ("coco_panoptic_133.json", "ade20k_150.json", "lvis_1203.json"):
        for item in _raw(file_name):
            synonyms = frozenset(s.lower() for s in item.get("synonyms") or [item["name"]])
            if item["name"].lower() not in seen and synonyms not in seen:
                seen.update((item["name"].lower(), synonyms))
                expected_names.append(item["name"])
    demo = Vocabulary.preset("demo")
    assert len(demo) == len(expected_names)
    assert list(demo.names) == expected_names
    assert demo.categories[:133] == Vocabulary.preset("coco").categories
    assert len({c.color for c in demo}) == len(demo)
    assert "sky-other-merged" in demo.names and "sky" not in demo.names  # both are "sky, clouds"
    assert len({frozenset(s.lower() for s in c.synonyms) for c in demo}) == len(demo)


def test_repeated_ade847_names_get_qualified_but_keep_synonyms():
    ade = Vocabulary.preset("ade20k-847")
    assert ade.by_id(115).name == "bag"
    travel = ade.by_id(192)
    assert travel.name == "bag (traveling bag)"
    assert travel.synonyms == ("bag", "traveling bag", "travelling bag", "grip", "suitcase")
    assert ade.by_id(189).name == "pot (id 189)"
    assert ade.by_id(189).synonyms == ("pot",)


def test_missing_isthing_follows_coco_then_ade_then_thing():
    text = json.dumps({"name": "t", "categories": [
        {"id": 1, "name": "table", "synonyms": ["table"], "isthing": None},  # ADE name: thing
        {"id": 2, "name": "walls", "synonyms": ["walls"], "isthing": None},  # a synonym: stuff
        {"id": 3, "name": "flurb", "synonyms": ["flurb", "Grass"], "isthing": None},  # stuff
        {"id": 4, "name": "zorblax", "synonyms": ["zorblax"], "isthing": None},  # unknown
        {"id": 5, "name": "sky", "synonyms": ["sky"], "isthing": True},  # given: kept
    ]})
    vocabulary = Vocabulary.from_json(text)
    assert [c.isthing for c in vocabulary] == [True, False, False, True, True]
    voc = Vocabulary.preset("pascal-context-59")
    assert voc.by_name("sky").isthing is False
    assert voc.by_name("cat").isthing is True


# --- lookups --------------------------------------------------------------------------------
def test_lookups():
    vocabulary = _small()
    assert len(vocabulary) == 3
    assert vocabulary.names == ("traffic cone", "road", "cell")
    assert vocabulary.ids == (1, 2, 3)
    assert [c.name for c in vocabulary] == list(vocabulary.names)
    assert vocabulary[1].name == "road"
    assert vocabulary.by_id(3).name == "cell"
    assert vocabulary.by_name("  ROAD ").id == 2
    assert vocabulary.index_of(3) == 2
    assert "Traffic Cone" in vocabulary and "cones" not in vocabulary
    assert vocabulary.synonym_lists() == [
        ["traffic cone", "cone", "cones"], ["road", "asphalt", "tarmac"], ["cell"]
    ]
    assert vocabulary.thing_ids == (1, 3)
    with pytest.raises(KeyError, match="no category named 'car'"):
        vocabulary.by_name("car")
    with pytest.raises(KeyError, match="id 9"):
        vocabulary.by_id(9)


# --- text syntax --------------------------------------------------------------------------------
def test_parse_example():
    vocabulary = Vocabulary.parse(
        "# my categories\n\ntraffic cone: cone, cones\nroad: asphalt, tarmac (stuff)  # ground\n"
        "cell\nnucleus: cell, nucleus (Thing)\ndoor-stuff = door, doors (stuff)\n"
    )
    assert [(c.id, c.name, c.synonyms, c.isthing) for c in vocabulary] == [
        (1, "traffic cone", ("traffic cone", "cone", "cones"), True),
        (2, "road", ("road", "asphalt", "tarmac"), False),
        (3, "cell", ("cell",), True),
        (4, "nucleus", ("nucleus", "cell"), True),
        (5, "door-stuff", ("door", "doors"), False),
    ]


def test_to_text_and_parse_round_trip():
    vocabulary = _small().with_category("bat (animal)", ["bats"]).with_category("x (thing)")
    text = vocabulary.to_text()
    assert text == (
        "traffic cone: cone, cones\nroad: asphalt, tarmac (stuff)\ncell\n"
        "bat (animal): bats\nx (thing) (thing)\n"
    )
    assert Vocabulary.parse(text) == vocabulary


@pytest.mark.parametrize("name", ["coco", "ade20k", "ade20k-847", "lvis", "pascal-voc", "demo"])
def test_presets_round_trip_through_text_with_base(name):
    preset = Vocabulary.preset(name)
    assert Vocabulary.parse(preset.to_text(), base=preset) == preset
    assert "scissors = scissor, scissors" in Vocabulary.preset("coco").to_text()


def test_parse_with_base_keeps_ids_and_colors_and_numbers_new_ones_above():
    coco = Vocabulary.preset("coco")
    edited = Vocabulary.parse("dog: dogs, puppy\ntraffic cone: cone", base=coco)
    assert edited.by_name("dog").id == 18
    assert edited.by_name("dog").color == coco.by_name("dog").color
    assert edited.by_name("dog").synonyms == ("dog", "dogs", "puppy")
    assert edited.by_name("traffic cone").id == 201


@pytest.mark.parametrize(
    "text,message",
    [
        ("a\nb\na: b,,c", "line 3: empty synonym in 'a: b,,c': remove the extra comma"),
        ("a: b,", "line 1: empty synonym"),
        ("a\n: b, c", "line 2: missing category name"),
        ("cell\n\nCell: cells", "line 3: 'Cell' repeats the category of line 1"),
        ("a: b: c", "line 1: more than one ':' or '='"),
        ("road (stuff): asphalt", "line 1: put the (thing)/(stuff) marker at the end"),
        ("a\nb =  # nothing", "line 2: nothing after '='"),
        ("# only a comment\n\n", "no categories"),
        ("", "no categories"),
    ],
)
def test_parse_errors_say_where_and_what_to_do(text, message):
    with pytest.raises(VocabularyError) as error:
        Vocabulary.parse(text)
    assert message in str(error.value)
    assert isinstance(error.value, ValueError)


# --- validation -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: Vocabulary([]), "at least one category"),
        (lambda: Vocabulary([Category(1, "a"), Category(2, "A")]), "duplicate name 'A'"),
        (lambda: Vocabulary([Category(1, "a"), Category(1, "b")]), "duplicate id 1"),
        (lambda: Category(1, "  "), "blank name"),
        (lambda: Category(1, "a", ("a", "")), "blank synonym"),
        (lambda: Category(1, "a", ("a", " b")), "leading or trailing spaces"),
        (lambda: Category(1, "a,b"), "contains a comma"),
        (lambda: Category(1, "a", color=(0, 0, 256)), "three integers 0-255"),
        (lambda: Category(1, "a", isthing=None), "isthing must be True or False"),
        (lambda: Category("1", "a"), "id must be an integer"),
        (lambda: Vocabulary(["a"]), "not a Category"),
    ],
)
def test_invalid_vocabularies_are_refused(make, message):
    with pytest.raises(VocabularyError, match=message):
        make()


def test_category_defaults_and_user_rule():
    assert Category(4, "cell").synonyms == ("cell",)
    assert Category.from_user(4, "cell", ["cells", "cell"]).synonyms == ("cell", "cells")


# --- combining and editing ------------------------------------------------------------------
def test_add_drops_repeated_names_and_renumbers_clashing_ids():
    a = Vocabulary([Category(1, "cat", color=(10, 10, 10)), Category(5, "dog")])
    b = Vocabulary([
        Category(1, "Dog"), Category(7, "cow"), Category(5, "eel", color=(10, 10, 10)),
        Category(2, "fox"),
    ])
    combined = a + b
    assert [(c.id, c.name) for c in combined] == [
        (1, "cat"), (5, "dog"), (7, "cow"), (8, "eel"), (2, "fox")
    ]
    assert combined.by_name("eel").color != (10, 10, 10)  # exact colour clash regenerated
    assert combined.by_name("cow").color == b.by_name("cow").color


def test_add_drops_categories_with_the_same_synonyms():
    a = Vocabulary([Category(1, "sky-other-merged", ("sky", "clouds"), isthing=False)])
    b = Vocabulary([
        Category(1, "sky", ("Clouds", "sky"), isthing=False),  # same words: dropped
        Category(2, "sky blue", ("sky",)),  # a subset is another category: kept
    ])
    assert list((a + b).names) == ["sky-other-merged", "sky blue"]


def test_remove_select_rename_with_category():
    vocabulary = _small()
    assert vocabulary.remove("ROAD", 3).names == ("traffic cone",)
    assert vocabulary.select(["cell", 1]).names == ("traffic cone", "cell")
    with pytest.raises(VocabularyError, match="no category named 'car'"):
        vocabulary.remove("car")
    with pytest.raises(VocabularyError, match="at least one category"):
        vocabulary.remove(1, 2, 3)

    renamed = vocabulary.rename("traffic cone", "pylon")
    pylon = renamed.by_id(1)
    assert (pylon.name, pylon.synonyms) == ("pylon", ("pylon", "traffic cone", "cone", "cones"))
    assert pylon.color == vocabulary.by_id(1).color and renamed.index_of(1) == 0
    assert renamed.rename(2, "cone").by_id(2).synonyms == ("cone", "road", "asphalt", "tarmac")
    assert vocabulary.rename("cell", "Cell").by_id(3).name == "Cell"
    with pytest.raises(VocabularyError, match="taken by category 3"):
        vocabulary.rename("road", "CELL")

    grown = vocabulary.with_category("nucleus", ["nuclei"], isthing=False)
    added = grown[-1]
    assert (added.id, added.synonyms, added.isthing) == (4, ("nucleus", "nuclei"), False)
    assert added.color not in [c.color for c in vocabulary]
    assert vocabulary.with_category("x", color=(1, 2, 3))[-1].color == (1, 2, 3)
    with pytest.raises(VocabularyError, match="duplicate name"):
        vocabulary.with_category("Cell")
    assert len(vocabulary) == 3  # immutability


# --- JSON ---------------------------------------------------------------------------------------
def test_json_round_trip_and_files(tmp_path):
    vocabulary = _small()
    data = json.loads(vocabulary.to_json())
    assert data["name"] == "custom"
    assert data["categories"][1] == {
        "id": 2, "name": "road", "synonyms": ["road", "asphalt", "tarmac"], "isthing": False,
        "color": list(vocabulary[1].color),
    }
    again = Vocabulary.from_json(vocabulary.to_json())
    assert again == vocabulary and again.name == vocabulary.name
    lvis = Vocabulary.preset("lvis")
    lvis.save(tmp_path / "lvis.json")
    loaded = Vocabulary.load(tmp_path / "lvis.json")
    assert loaded == lvis and loaded.name == lvis.name
    assert (tmp_path / "lvis.json").read_text() == lvis.to_json()


@pytest.mark.parametrize(
    "text,message",
    [("{", "not valid JSON"), ("[]", "categories"), ('{"categories": [{"id": 1}]}', "category 0")],
)
def test_bad_json_is_refused(text, message):
    with pytest.raises(VocabularyError, match=message):
        Vocabulary.from_json(text)


# --- seen / unseen --------------------------------------------------------------------------
def test_seen_mask():
    coco = Vocabulary.preset("coco")
    assert coco.seen_mask() == [True] * 133
    assert "wall" in coco_training_synonyms()
    assert "Person" not in coco_training_synonyms()
    mixed = Vocabulary.parse("zorblax\nPerson\nfoo: bar, person")
    assert mixed.seen_mask() == [False, False, True]
    ade = Vocabulary.preset("ade20k")
    assert ade.seen_mask()[ade.index_of(ade.by_name("wall").id)] is True


# --- colours --------------------------------------------------------------------------------
def test_generated_colors_are_deterministic_and_distinct():
    text = "\n".join(f"thing{i}" for i in range(40))
    first, second = Vocabulary.parse(text), Vocabulary.parse(text)
    assert [c.color for c in first] == [c.color for c in second]
    colors = np.array([c.color for c in first], dtype=float)
    distances = np.sqrt(((colors[:, None] - colors[None]) ** 2).sum(-1))
    np.fill_diagonal(distances, np.inf)
    assert distances.min() >= 30
    assert distinct_colors(3) == distinct_colors(5)[:3]
    lvis = {c.color for c in Vocabulary.preset("lvis")}
    assert len(lvis) == 1203


def test_generated_colors_avoid_given_ones():
    avoid = distinct_colors(4)
    fresh = distinct_colors(4, avoid=avoid)
    gaps = [min(np.linalg.norm(np.subtract(f, a)) for a in avoid) for f in fresh]
    assert min(gaps) >= 30
    with pytest.raises(ValueError):
        distinct_colors(-1)


def test_instance_shades():
    base = (100, 150, 200)
    shades = [instance_shade(base, k) for k in range(7)]
    assert shades[0] == base
    assert shades[1] == (125, 167, 209)  # 16% towards white
    assert shades[2] == (84, 126, 168)  # 16% towards black
    assert len(set(shades)) == 7


# --- ids and byte-order marks (issue 15, item 9) -------------------------------------------
@pytest.mark.parametrize("bad", [-1, -5, 2**31, 2**40])
def test_category_ids_must_fit_32_bits_and_not_be_negative(bad):
    from napari_odise.vocabulary import Category, VocabularyError

    with pytest.raises(VocabularyError, match=f"id {bad} is outside 0..2147483647"):
        Category(bad, "cat")
    text = json.dumps({"name": "v", "categories": [{"id": bad, "name": "cat"}]})
    with pytest.raises(VocabularyError, match="unassigned"):
        Vocabulary.from_json(text)
    assert Category(2**31 - 1, "cat").id == 2**31 - 1


def test_a_utf8_bom_is_not_part_of_the_first_name(tmp_path):
    parsed = Vocabulary.parse("\ufeffcat\ndog\n")
    assert parsed.names == ("cat", "dog")
    path = tmp_path / "v.json"
    path.write_bytes(b"\xef\xbb\xbf" + Vocabulary.parse("cat\ndog").to_json().encode())
    assert Vocabulary.load(path).names == ("cat", "dog")
    from napari_odise.batch.vocabularies import load_vocabulary

    text_file = tmp_path / "v.txt"
    text_file.write_bytes(b"\xef\xbb\xbfcat: kitten\nroad (stuff)\n")  # as Notepad saves it
    assert load_vocabulary(str(text_file)).names == ("cat", "road")
    assert load_vocabulary(str(path)).by_name("cat").id == 1
