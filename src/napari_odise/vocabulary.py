"""Categories, synonyms and thing/stuff flags: what ODISE is asked to find.

ODISE embeds each category as a list of raw synonym strings and takes the best match over them, so
a category here is a stable id, a display name, the exact synonyms the model embeds, a thing/stuff
flag for the panoptic merge, and a colour. A :class:`Vocabulary` is an immutable, ordered tuple of
categories: the order is the order of the model's class logits.

Rules where the data leaves a choice:

* Preset synonyms are kept exactly as ODISE embeds them, even where the display name is not one
  of them (COCO's ``door-stuff`` embeds ``door, doors``). Everything a user types (``parse``,
  ``with_category``, ``rename``) puts the name first among the synonyms.
* ``isthing`` missing (``null``) in a file: a category takes the flag of a COCO-133 or ADE20K-150
  category with the same name (COCO first), otherwise of one sharing any of its name or synonyms
  (case-insensitive; COCO first, then ADE20K-150, in synonym order), otherwise it is a thing.
* Missing colours are generated deterministically (:func:`napari_odise.colors.distinct_colors`),
  away from the colours already present.
* Names are unique case-insensitively. ADE20K-847 repeats nine names (three kinds of "bag"); the
  preset tells repeats apart as ``"bag (traveling bag)"`` using their first other synonym, or
  ``"pot (id 189)"`` when they have none. Their synonyms are untouched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path

from napari_odise.colors import RGB, distinct_colors
from napari_odise.errors import UserError

_RESERVED = {",": "a comma", "#": "a '#'", ":": "a ':'", "=": "a '='", "\n": "a line break"}
_MARKER = re.compile(r"\(\s*(thing|stuff)\s*\)\s*$", re.IGNORECASE)


class VocabularyError(UserError, ValueError):
    """A vocabulary that cannot be used, with what is wrong and how to fix it."""


class UnknownCategoryError(VocabularyError, KeyError):
    """A category name or id that the vocabulary does not have (a KeyError too, as lookups were)."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


def _check_text(kind: str, text: object, where: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise VocabularyError(f"{where}: blank {kind} {text!r}: every {kind} needs some text")
    if text != text.strip():
        raise VocabularyError(f"{where}: {kind} {text!r} has leading or trailing spaces")
    for char, label in _RESERVED.items():
        if char in text:
            raise VocabularyError(
                f"{where}: {kind} {text!r} contains {label}, which the text format reserves"
            )


MAX_CATEGORY_ID = 2**31 - 1  # COCO ids are int32; -1 is the result's "unassigned"
BOM = "\ufeff"  # Windows editors start UTF-8 files with it; it is not part of any name


def _without_bom(text: str) -> str:
    return text[1:] if text.startswith(BOM) else text


@dataclass(frozen=True)
class Category:
    """One thing ODISE can name. ``synonyms`` are the exact strings it embeds (max over them).

    ``synonyms`` left empty means just the name. ``color`` left ``None`` is filled in by the
    :class:`Vocabulary` the category joins (distinct from the colours already there).
    """

    id: int
    name: str
    synonyms: tuple[str, ...] = ()
    isthing: bool = True
    color: RGB | None = None

    def __post_init__(self):
        where = f"category {self.name!r}"
        if isinstance(self.id, bool) or not isinstance(self.id, int):
            raise VocabularyError(f"{where}: id must be an integer, got {self.id!r}")
        if not 0 <= self.id <= MAX_CATEGORY_ID:
            raise VocabularyError(
                f"{where}: id {self.id} is outside 0..{MAX_CATEGORY_ID} (COCO category ids are "
                f"stored as 32-bit integers, and negative ids mean 'unassigned'): choose another id"
            )
        _check_text("name", self.name, where)
        synonyms = (self.synonyms,) if isinstance(self.synonyms, str) else tuple(self.synonyms)
        if not synonyms:
            synonyms = (self.name,)
        for synonym in synonyms:
            _check_text("synonym", synonym, where)
        object.__setattr__(self, "synonyms", synonyms)
        if not isinstance(self.isthing, bool):
            raise VocabularyError(f"{where}: isthing must be True or False, got {self.isthing!r}")
        if self.color is not None:
            color = tuple(self.color)
            if len(color) != 3 or not all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in color
            ):
                raise VocabularyError(
                    f"{where}: color must be three integers 0-255, got {self.color!r}"
                )
            object.__setattr__(self, "color", color)

    @classmethod
    def from_user(
        cls,
        id: int,
        name: str,
        synonyms: Iterable[str] = (),
        isthing: bool = True,
        color: RGB | None = None,
    ) -> Category:
        """A category as a user types it: the name becomes the first synonym (moved or added)."""
        name = name.strip() if isinstance(name, str) else name
        rest = [s.strip() for s in synonyms if s.strip() != name]
        return cls(id, name, (name, *rest), isthing, color)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "synonyms": list(self.synonyms),
            "isthing": self.isthing,
            "color": list(self.color) if self.color is not None else None,
        }


class Vocabulary:
    """An immutable, ordered set of categories with unique names (case-insensitive) and ids.

    Equality compares the categories only; ``name`` is a label for people and files.
    """

    def __init__(self, categories: Iterable[Category], name: str = "custom"):
        categories = tuple(categories)
        if not categories:
            raise VocabularyError("a vocabulary needs at least one category")
        for position, category in enumerate(categories):
            if not isinstance(category, Category):
                raise VocabularyError(
                    f"item {position} is {type(category).__name__}, not a Category"
                )
        _check_unique(categories)
        self._categories = _fill_colors(categories)
        self._name = name
        self._position_by_id = {c.id: i for i, c in enumerate(self._categories)}
        self._position_by_name = {c.name.lower(): i for i, c in enumerate(self._categories)}
        self._position_by_synonyms: dict[frozenset[str], int] = {}
        for i, c in enumerate(self._categories):
            self._position_by_synonyms.setdefault(_synonym_key(c), i)

    # --- sequence -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._categories)

    def __iter__(self) -> Iterator[Category]:
        return iter(self._categories)

    def __getitem__(self, position: int) -> Category:
        return self._categories[position]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return self._categories == other._categories

    def __hash__(self) -> int:
        return hash(self._categories)

    def __repr__(self) -> str:
        shown = ", ".join(self.names[:5]) + (", ..." if len(self) > 5 else "")
        return f"Vocabulary({self.name!r}, {len(self)} categories: {shown})"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.strip().lower() in self._position_by_name

    def __add__(self, other: Vocabulary) -> Vocabulary:
        """Concatenate; categories of ``other`` already here are dropped: same name, or the same
        synonyms (COCO's "sky-other-merged" and ADE20K's "sky" are both "sky, clouds": kept twice,
        they would split one text embedding's probability between two names).

        Kept ids of ``other`` that clash with ids here move above the largest id in use (in
        order); kept colours that exactly equal one here are regenerated.
        """
        if not isinstance(other, Vocabulary):
            return NotImplemented
        kept = [c for c in other if self.duplicate_of(c) is None]
        used_ids = set(self.ids)
        next_id = max([*self.ids, *(c.id for c in kept)]) + 1
        used_colors = {c.color for c in self}
        added = []
        for category in kept:
            if category.id in used_ids:
                category = replace(category, id=next_id)
                next_id += 1
            if category.color in used_colors:
                category = replace(category, color=None)
            used_ids.add(category.id)
            used_colors.add(category.color)
            added.append(category)
        return Vocabulary((*self, *added), name=f"{self.name} + {other.name}")

    # --- lookups ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def categories(self) -> tuple[Category, ...]:
        return self._categories

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self._categories)

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(c.id for c in self._categories)

    @property
    def thing_ids(self) -> tuple[int, ...]:
        return tuple(c.id for c in self._categories if c.isthing)

    def by_id(self, category_id: int) -> Category:
        return self._categories[self.index_of(category_id)]

    def by_name(self, name: str) -> Category:
        try:
            return self._categories[self._position_by_name[name.strip().lower()]]
        except KeyError:
            raise UnknownCategoryError(f"no category named {name!r} in {self.name!r}") from None

    def duplicate_of(self, category: Category) -> Category | None:
        """The category here that ``category`` repeats (same name, else the same synonyms):
        the one it merges into under ``+``."""
        if category.name in self:
            return self.by_name(category.name)
        position = self._position_by_synonyms.get(_synonym_key(category))
        return None if position is None else self._categories[position]

    def index_of(self, category_id: int) -> int:
        """Position of a category id: the index of its column in the model's class logits."""
        try:
            return self._position_by_id[category_id]
        except KeyError:
            raise UnknownCategoryError(f"no category with id {category_id!r} in {self.name!r}") from None

    def synonym_lists(self) -> list[list[str]]:
        """What the model embeds, one list of raw strings per category, in order."""
        return [list(c.synonyms) for c in self._categories]

    def seen_mask(self) -> list[bool]:
        """Per category, whether ODISE's ensemble treats it as seen in COCO training: any of its
        synonyms equals (exactly, case-sensitive, as the official code compares) a COCO synonym."""
        seen = coco_training_synonyms()
        return [any(s in seen for s in c.synonyms) for c in self._categories]

    # --- edits (each returns a new vocabulary) ------------------------------------------------
    def _resolve(self, name_or_id: str | int) -> Category:
        """The category a name or an id means; UnknownCategoryError (a VocabularyError) if none."""
        return self.by_name(name_or_id) if isinstance(name_or_id, str) else self.by_id(name_or_id)

    def remove(self, *names_or_ids: str | int) -> Vocabulary:
        """Without the given categories (names case-insensitive, or ids)."""
        gone = {self._resolve(key).id for key in names_or_ids}
        return Vocabulary((c for c in self if c.id not in gone), name=self.name)

    def select(self, names_or_ids: Iterable[str | int]) -> Vocabulary:
        """Only the given categories, in this vocabulary's order (ids and colours kept)."""
        keep = {self._resolve(key).id for key in names_or_ids}
        return Vocabulary((c for c in self if c.id in keep), name=self.name)

    def rename(self, old: str | int, new: str) -> Vocabulary:
        """Give a category a new name, which becomes its first synonym.

        The old synonyms stay (the old name too, if it was one), so the model still recognises
        what it recognised before; id, colour and flag are unchanged.
        """
        category = self._resolve(old)
        new = new.strip() if isinstance(new, str) else new
        if isinstance(new, str) and new.lower() in self._position_by_name:
            clash = self.by_name(new)
            if clash.id != category.id:
                raise VocabularyError(
                    f"cannot rename {category.name!r} to {new!r}: that name is taken by "
                    f"category {clash.id}; remove or rename that one first"
                )
        renamed = Category.from_user(
            category.id, new, category.synonyms, category.isthing, category.color
        )
        return Vocabulary(
            (renamed if c.id == category.id else c for c in self), name=self.name
        )

    def with_category(
        self,
        name: str,
        synonyms: Iterable[str] = (),
        isthing: bool = True,
        color: RGB | None = None,
    ) -> Vocabulary:
        """With one more category at the end, id one above the largest; name first synonym."""
        if isinstance(synonyms, str):
            synonyms = (synonyms,)
        category = Category.from_user(max(self.ids) + 1, name, synonyms, isthing, color)
        return Vocabulary((*self, category), name=self.name)

    # --- text format --------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str, base: Vocabulary | None = None, name: str = "custom") -> Vocabulary:
        """Categories from text, one per line::

            traffic cone: cone, cones      # a thing; embeds "traffic cone", "cone", "cones"
            road: asphalt, tarmac (stuff)
            cell
            door-stuff = door, doors (stuff)   # '=': embed exactly these, not the name

        ``#`` starts a comment; blank lines are ignored; a trailing ``(thing)`` / ``(stuff)`` sets
        the flag (default thing). Ids count up from 1; with ``base``, a category whose name is in
        ``base`` keeps that id and colour, and new ones get ids above the largest in ``base``.
        """
        entries = []  # (line number, name, synonyms, isthing)
        first_line_of: dict[str, int] = {}
        for number, raw in enumerate(_without_bom(text).splitlines(), start=1):
            entry = _parse_line(raw, number)
            if entry is None:
                continue
            key = entry[0].lower()
            if key in first_line_of:
                raise VocabularyError(
                    f"line {number}: {entry[0]!r} repeats the category of line "
                    f"{first_line_of[key]} (names are case-insensitive): put all its synonyms "
                    f"on one line"
                )
            first_line_of[key] = number
            entries.append((number, *entry))
        if not entries:
            raise VocabularyError("no categories: write one category per line, e.g. 'cell'")
        taken_ids = set(base.ids) if base is not None else set()
        next_id = max(taken_ids) + 1 if taken_ids else 1
        categories = []
        for number, label, synonyms, exact, isthing in entries:
            previous = base.by_name(label) if base is not None and label in base else None
            if previous is not None:
                category_id, color = previous.id, previous.color
            else:
                category_id, color = next_id, None
                next_id += 1
            make = Category if exact else Category.from_user
            try:
                categories.append(make(category_id, label, synonyms, isthing, color))
            except VocabularyError as error:
                raise VocabularyError(f"line {number}: {error}") from None
        return cls(categories, name=base.name if base is not None else name)

    def to_text(self) -> str:
        """This vocabulary in :meth:`parse`'s syntax; ``parse(v.to_text(), base=v) == v``."""
        return "".join(_format_line(c) + "\n" for c in self._categories)

    # --- JSON ---------------------------------------------------------------------------------
    def to_json(self) -> str:
        """The preset files' schema: ``{"name", "categories": [{id, name, synonyms, isthing,
        color}]}``."""
        data = {"name": self.name, "categories": [c.to_dict() for c in self._categories]}
        return json.dumps(data, indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        try:
            data = json.loads(_without_bom(text))
        except json.JSONDecodeError as error:
            raise VocabularyError(f"not valid JSON: {error}") from None
        if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
            raise VocabularyError('expected an object with a "categories" list')
        return cls(_categories_from_dicts(data["categories"]), name=data.get("name", "custom"))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    # --- presets ------------------------------------------------------------------------------
    @staticmethod
    def preset_names() -> list[str]:
        return list(_PRESET_FILES) + ["demo"]

    @classmethod
    def preset(cls, name: str) -> Vocabulary:
        """A packaged dataset vocabulary (dataset ids kept), by name or alias.

        ``"demo"`` is the official ODISE demo's default: COCO + ADE20K-150 + LVIS, later
        categories whose name (case-insensitive) already appeared dropped.
        """
        key = name.strip().lower().replace("_", "-")
        key = _PRESET_ALIASES.get(key, key)
        if key == "demo":
            return _demo()
        if key not in _PRESET_FILES:
            raise VocabularyError(
                f"unknown preset {name!r}; choose one of: {', '.join(cls.preset_names())}"
            )
        return _preset(key)


# --- text format helpers -------------------------------------------------------------------------
def _parse_line(raw: str, number: int) -> tuple[str, list[str], bool, bool] | None:
    """(name, synonyms, exact, isthing) of one line, or None for blank/comment lines."""
    line = raw.split("#", 1)[0].strip()
    if not line:
        return None
    isthing = True
    marker = _MARKER.search(line)
    if marker:
        isthing = marker.group(1).lower() == "thing"
        line = line[: marker.start()].strip()
    separators = [i for i, char in enumerate(line) if char in ":="]
    if not separators:
        label, synonyms, exact = line, [], False
    else:
        if len(separators) > 1:
            raise VocabularyError(
                f"line {number}: more than one ':' or '=' in {raw.strip()!r}: "
                f"write one category per line as 'name: synonym, synonym'"
            )
        at = separators[0]
        label, listed, exact = line[:at].strip(), line[at + 1 :].strip(), line[at] == "="
        synonyms = [s.strip() for s in listed.split(",")] if listed else []
        if any(not s for s in synonyms):
            raise VocabularyError(
                f"line {number}: empty synonym in {raw.strip()!r}: remove the extra comma"
            )
        if exact and not synonyms:
            raise VocabularyError(
                f"line {number}: nothing after '=' in {raw.strip()!r}: list the synonyms to "
                f"embed, or use ':' to embed the name"
            )
    if not label:
        raise VocabularyError(
            f"line {number}: missing category name in {raw.strip()!r}: write 'name: synonyms'"
        )
    if _MARKER.search(label) and separators:
        raise VocabularyError(
            f"line {number}: put the (thing)/(stuff) marker at the end of the line, after the "
            f"synonyms: {raw.strip()!r}"
        )
    return label, synonyms, exact, isthing


def _format_line(category: Category) -> str:
    if category.synonyms[0] == category.name and category.name not in category.synonyms[1:]:
        rest = category.synonyms[1:]
        line = f"{category.name}: {', '.join(rest)}" if rest else category.name
    else:
        line = f"{category.name} = {', '.join(category.synonyms)}"
    if not category.isthing:
        return line + " (stuff)"
    if _MARKER.search(line):
        return line + " (thing)"
    return line


# --- validation and colours ---------------------------------------------------------------------
def _check_unique(categories: Sequence[Category]) -> None:
    position_of_name: dict[str, int] = {}
    position_of_id: dict[int, int] = {}
    for position, category in enumerate(categories):
        key = category.name.lower()
        if key in position_of_name:
            raise VocabularyError(
                f"duplicate name {category.name!r} (categories {position_of_name[key]} and "
                f"{position}; names are case-insensitive): rename or remove one"
            )
        if category.id in position_of_id:
            raise VocabularyError(
                f"duplicate id {category.id} ({categories[position_of_id[category.id]].name!r} "
                f"and {category.name!r}): give each category its own id"
            )
        position_of_name[key] = position
        position_of_id[category.id] = position


def _fill_colors(categories: tuple[Category, ...]) -> tuple[Category, ...]:
    missing = [i for i, c in enumerate(categories) if c.color is None]
    if not missing:
        return categories
    colors = distinct_colors(len(missing), avoid=[c.color for c in categories if c.color])
    filled = list(categories)
    for position, color in zip(missing, colors):
        filled[position] = replace(filled[position], color=color)
    return tuple(filled)


def _categories_from_dicts(items: list) -> list[Category]:
    categories = []
    for position, item in enumerate(items):
        if not isinstance(item, dict) or "id" not in item or "name" not in item:
            raise VocabularyError(f'category {position}: needs at least "id" and "name"')
        isthing = item.get("isthing")
        synonyms = tuple(item.get("synonyms") or ())
        if isthing is None:
            isthing = _guess_isthing(item["name"], synonyms)
        categories.append(
            Category(item["id"], item["name"], synonyms, isthing, item.get("color"))
        )
    return categories


# --- presets ------------------------------------------------------------------------------------
_PRESET_FILES = {
    "coco": "coco_panoptic_133.json",
    "ade20k": "ade20k_150.json",
    "ade20k-847": "ade20k_847.json",
    "lvis": "lvis_1203.json",
    "pascal-context-59": "pascal_context_59.json",
    "pascal-context-459": "pascal_context_459.json",
    "pascal-voc": "pascal_voc_21.json",
}
_PRESET_ALIASES = {
    "coco-panoptic-133": "coco",
    "coco-133": "coco",
    "ade20k-150": "ade20k",
    "ade20k-full": "ade20k-847",
    "lvis-1203": "lvis",
    "pascal-voc-21": "pascal-voc",
    "voc": "pascal-voc",
}


@cache
def _preset_data(key: str) -> dict:
    files = resources.files("napari_odise") / "presets"
    return json.loads((files / _PRESET_FILES[key]).read_text(encoding="utf-8"))


@cache
def _preset(key: str) -> Vocabulary:
    data = _preset_data(key)
    return Vocabulary(
        _categories_from_dicts(_distinguish_repeated_names(data["categories"])), name=data["name"]
    )


def has_kind_marker(line: str) -> bool:
    """Whether a vocabulary line ends with its own "(thing)" or "(stuff)" marker."""
    return _MARKER.search(line) is not None


def _synonym_key(category: Category) -> frozenset[str]:
    return frozenset(s.lower() for s in category.synonyms)


@lru_cache(maxsize=1)
def _demo() -> Vocabulary:
    merged = _preset("coco") + _preset("ade20k") + _preset("lvis")
    # LVIS has no colours of its own: generate them away from COCO's and ADE20K's.
    given = len(_preset("coco") + _preset("ade20k"))
    recolored = [c if i < given else replace(c, color=None) for i, c in enumerate(merged)]
    return Vocabulary(recolored, name="ODISE demo (COCO + ADE20K-150 + LVIS)")


def _distinguish_repeated_names(items: list[dict]) -> list[dict]:
    """Later repeats of a name get a qualifier; synonyms (what the model embeds) stay as is."""
    names = {item["name"].lower() for item in items}
    seen: set[str] = set()
    result = []
    for item in items:
        key = item["name"].lower()
        if key in seen:
            others = [s for s in item.get("synonyms", ()) if s.lower() != key]
            label = f"{item['name']} ({others[0]})" if others else ""
            if not label or label.lower() in names:
                label = f"{item['name']} (id {item['id']})"
            item = {**item, "name": label}
            names.add(label.lower())
        seen.add(item["name"].lower())
        result.append(item)
    return result


@lru_cache(maxsize=1)
def _isthing_lookup() -> tuple[dict[str, bool], dict[str, bool]]:
    """(by name, by any synonym or name): lower-case text -> isthing, COCO before ADE20K-150."""
    by_name: dict[str, bool] = {}
    by_word: dict[str, bool] = {}
    for key in ("coco", "ade20k"):
        for item in _preset_data(key)["categories"]:
            by_name.setdefault(item["name"].lower(), bool(item["isthing"]))
        for item in _preset_data(key)["categories"]:
            for word in (item["name"], *item["synonyms"]):
                by_word.setdefault(word.lower(), bool(item["isthing"]))
    return by_name, by_word


def _guess_isthing(name: str, synonyms: Iterable[str]) -> bool:
    by_name, by_word = _isthing_lookup()
    if name.lower() in by_name:
        return by_name[name.lower()]
    for word in (name, *synonyms):
        if word.lower() in by_word:
            return by_word[word.lower()]
    return True


def coco_training_synonyms() -> frozenset[str]:
    """Every synonym of the COCO-133 preset: ODISE's 'seen in training' test compares to these."""
    return _coco_synonyms()


@lru_cache(maxsize=1)
def _coco_synonyms() -> frozenset[str]:
    return frozenset(s for item in _preset_data("coco")["categories"] for s in item["synonyms"])
