import numpy as np
import pandas as pd
import pytest

from napari_odise import refine
from napari_odise.result import UNASSIGNED, check_consistency, segments_table
from napari_odise.vocabulary import Vocabulary

from hand_made import CAT, DOG, GRASS, MAP, VOCABULARY


def _table(rows):
    """Rows of (id, category, score, area, source) -> a segments table."""
    by_name = {c.name: c for c in VOCABULARY}
    return segments_table(
        [r[0] for r in rows],
        [by_name[r[1]].id if r[1] != "unassigned" else UNASSIGNED for r in rows],
        [r[1] for r in rows],
        [by_name[r[1]].isthing if r[1] != "unassigned" else False for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
    )


TABLE = _table([
    (1, "cat", 0.9, 9, "model"),
    (2, "cat", 0.8, 8, "model"),
    (3, "dog", 0.5, 3, "model"),
    (4, "grass", 0.7, 6, "model"),
    (5, "dog", 0.6, 4, "model"),
])


def _check(edit, expected_map, expected_rows):
    """An edit gave exactly the expected map and table, did not touch its inputs, and is
    consistent."""
    new_map, new_table = edit
    np.testing.assert_array_equal(new_map, np.array(expected_map, dtype=np.int32))
    assert new_map.dtype == np.int32 and not np.shares_memory(new_map, MAP)
    pd.testing.assert_frame_equal(new_table, _table(expected_rows))
    check_consistency(new_map, new_table, VOCABULARY)
    np.testing.assert_array_equal(MAP, _ORIGINAL_MAP)
    pd.testing.assert_frame_equal(TABLE, _ORIGINAL_TABLE)


_ORIGINAL_MAP, _ORIGINAL_TABLE = MAP.copy(), TABLE.copy()


def test_fixture_is_consistent():
    check_consistency(MAP, TABLE, VOCABULARY)


def test_reassign():
    _check(
        refine.reassign(MAP, TABLE, [3, 5], GRASS),
        MAP,
        [(1, "cat", 0.9, 9, "model"), (2, "cat", 0.8, 8, "model"),
         (3, "grass", 0.5, 3, "edited"), (4, "grass", 0.7, 6, "model"),
         (5, "grass", 0.6, 4, "edited")],
    )
    _, unassigned = refine.reassign(MAP, TABLE, 2, None)
    assert unassigned.loc[1, ["category_id", "category", "isthing"]].tolist() == [
        UNASSIGNED, "unassigned", False
    ]
    with pytest.raises(ValueError, match=r"no segments with ids \[7\]"):
        refine.reassign(MAP, TABLE, [1, 7], CAT)


def test_merge_takes_smallest_id_largest_category_weighted_score():
    new_map, new_table = refine.merge(MAP, TABLE, [5, 4, 3])
    expected = np.where(np.isin(MAP, [4, 5]), 3, MAP)
    _check(
        (new_map, new_table),
        expected,
        [(1, "cat", 0.9, 9, "model"), (2, "cat", 0.8, 8, "model"),
         (3, "grass", (3 * 0.5 + 6 * 0.7 + 4 * 0.6) / 13, 13, "edited")],
    )
    unchanged_map, unchanged = refine.merge(MAP, TABLE, [2])
    np.testing.assert_array_equal(unchanged_map, MAP)
    pd.testing.assert_frame_equal(unchanged, TABLE)


def test_merge_ignores_missing_scores():
    table = TABLE.assign(score=[np.nan, 0.8, 0.5, 0.7, 0.6])
    _, merged = refine.merge(MAP, table, [1, 2])
    assert merged.loc[0, "score"] == pytest.approx(0.8)
    _, merged = refine.merge(MAP, table.assign(score=np.nan), [1, 2])
    assert np.isnan(merged.loc[0, "score"])


def test_split_connected():
    _check(
        refine.split_connected(MAP, TABLE, 1),
        [
            [1, 1, 0, 2, 2, 2, 0, 3],
            [1, 0, 0, 2, 0, 2, 0, 0],
            [1, 1, 0, 2, 2, 2, 0, 3],
            [0, 0, 0, 0, 0, 0, 0, 3],
            [4, 4, 4, 5, 5, 0, 6, 6],
            [4, 4, 4, 5, 5, 0, 6, 6],
        ],
        [(1, "cat", 0.9, 5, "edited"), (2, "cat", 0.8, 8, "model"), (3, "dog", 0.5, 3, "model"),
         (4, "grass", 0.7, 6, "model"), (5, "dog", 0.6, 4, "model"),
         (6, "cat", 0.9, 4, "edited")],
    )
    new_map, new_table = refine.split_connected(MAP, TABLE, 3)  # the larger part keeps id 3
    assert new_map[0, 7] == 6 and new_map[2, 7] == 3 and new_map[3, 7] == 3
    assert new_table["area"].tolist() == [9, 8, 2, 6, 4, 1]
    single_map, single = refine.split_connected(MAP, TABLE, 2)
    np.testing.assert_array_equal(single_map, MAP)
    pd.testing.assert_frame_equal(single, TABLE)


def test_split_connectivity():
    diagonal = np.array([[1, 0], [0, 1]], dtype=np.int32)
    table = segments_table([1], [1], ["cat"], [True], [0.5], [2], ["model"])
    four, _ = refine.split_connected(diagonal, table, 1, connectivity=1)
    np.testing.assert_array_equal(four, [[1, 0], [0, 2]])
    eight, _ = refine.split_connected(diagonal, table, 1, connectivity=2)
    np.testing.assert_array_equal(eight, diagonal)


def test_delete():
    _check(
        refine.delete(MAP, TABLE, [2, 3]),
        np.where(np.isin(MAP, [2, 3]), 0, MAP),
        [(1, "cat", 0.9, 9, "model"), (4, "grass", 0.7, 6, "model"),
         (5, "dog", 0.6, 4, "model")],
    )


def test_fill_holes_takes_unlabeled_pixels_only_by_default():
    expected = MAP.copy()
    expected[1, 4] = 2
    _check(
        refine.fill_holes(MAP, TABLE, 2),
        expected,
        [(1, "cat", 0.9, 9, "model"), (2, "cat", 0.8, 9, "edited"),
         (3, "dog", 0.5, 3, "model"), (4, "grass", 0.7, 6, "model"),
         (5, "dog", 0.6, 4, "model")],
    )
    # segment 1's gap opens to the image border through unlabeled pixels: not a hole
    open_map, open_table = refine.fill_holes(MAP, TABLE, 1)
    np.testing.assert_array_equal(open_map, MAP)
    pd.testing.assert_frame_equal(open_table, TABLE)


def test_fill_holes_can_absorb_enclosed_segments():
    enclosed = MAP.copy()
    enclosed[1, 4] = 6
    table = pd.concat(
        [TABLE, _table([(6, "dog", 0.4, 1, "model")])], ignore_index=True
    )
    kept_map, kept = refine.fill_holes(enclosed, table, 2)
    np.testing.assert_array_equal(kept_map, enclosed)
    pd.testing.assert_frame_equal(kept, table)
    absorbed_map, absorbed = refine.fill_holes(enclosed, table, 2, overwrite_segments=True)
    assert absorbed_map[1, 4] == 2
    assert absorbed["id"].tolist() == [1, 2, 3, 4, 5]
    assert absorbed.loc[1, ["area", "source"]].tolist() == [9, "edited"]
    check_consistency(absorbed_map, absorbed, VOCABULARY)


def test_remove_small():
    _check(
        refine.remove_small(MAP, TABLE, 4),
        np.where(MAP == 3, 0, MAP),
        [(1, "cat", 0.9, 9, "model"), (2, "cat", 0.8, 8, "model"),
         (4, "grass", 0.7, 6, "model"), (5, "dog", 0.6, 4, "model")],
    )
    expected = np.where(np.isin(MAP, [3, 5]), 0, MAP)
    expected[4:, 6:] = 0
    _check(
        refine.remove_small(MAP, TABLE, 5),
        expected,
        [(1, "cat", 0.9, 5, "edited"), (2, "cat", 0.8, 8, "model"),
         (4, "grass", 0.7, 6, "model")],
    )
    only_one = MAP.copy()
    only_one[4:, 6:] = 0
    _check(
        refine.remove_small(MAP, TABLE, 5, ids=[1]),
        only_one,
        [(1, "cat", 0.9, 5, "edited"), (2, "cat", 0.8, 8, "model"),
         (3, "dog", 0.5, 3, "model"), (4, "grass", 0.7, 6, "model"),
         (5, "dog", 0.6, 4, "model")],
    )


def test_new_segment_id():
    assert refine.new_segment_id(MAP, TABLE) == 6
    assert refine.new_segment_id(np.zeros((2, 2), np.int32), segments_table()) == 1


def test_sync_after_painting():
    painted = MAP.copy()
    painted[3, 0:3] = 7  # new id, category chosen before painting
    painted[3, 3:5] = 8  # new id, nobody chose
    painted[painted == 3] = 0  # erased
    painted[4, 0] = 0  # partly erased
    _check(
        refine.sync(painted, TABLE, VOCABULARY, pending={7: DOG}),
        painted,
        [(1, "cat", 0.9, 9, "model"), (2, "cat", 0.8, 8, "model"),
         (4, "grass", 0.7, 5, "edited"), (5, "dog", 0.6, 4, "model"),
         (7, "dog", np.nan, 3, "edited"), (8, "unassigned", np.nan, 2, "edited")],
    )
    _, with_default = refine.sync(painted, TABLE, VOCABULARY, pending={7: DOG}, default=GRASS)
    assert with_default["category"].tolist()[-2:] == ["dog", "grass"]
    other = Vocabulary.parse("cow")
    with pytest.raises(ValueError, match="'cow' is not in"):
        refine.sync(painted, TABLE, VOCABULARY, default=other[0])
    untouched_map, untouched = refine.sync(MAP, TABLE, VOCABULARY)
    pd.testing.assert_frame_equal(untouched, TABLE)


def test_changed_pixels_feed_napari_setitem():
    new_map, _ = refine.delete(MAP, TABLE, [3])
    rows, cols = refine.changed_pixels(MAP, new_map)
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 7), (2, 7), (3, 7)]
    replayed = MAP.copy()
    replayed[rows, cols] = new_map[rows, cols]
    np.testing.assert_array_equal(replayed, new_map)
    with pytest.raises(ValueError, match="shape"):
        refine.changed_pixels(MAP, MAP[:2])


def _random_scene(rng):
    """A random map of blocky segments with a consistent table."""
    coarse = rng.integers(0, 7, size=(4, 5))
    label_map = np.kron(coarse, np.ones((3, 3), dtype=np.int64)).astype(np.int32)
    label_map[rng.random(label_map.shape) < 0.08] = rng.integers(0, 9)
    pending = {i: VOCABULARY[int(rng.integers(3))] for i in range(1, 9)}
    new_map, table = refine.sync(label_map, segments_table(), VOCABULARY, pending=pending)
    return new_map, table.assign(source="model", score=rng.random(len(table)))


def _random_edit(rng, label_map, table):
    ids = table["id"].to_numpy()
    if len(ids) == 0:
        return refine.sync(np.ones_like(label_map), table, VOCABULARY, default=CAT)
    some = rng.choice(ids, size=int(rng.integers(1, min(3, len(ids)) + 1)), replace=False)
    one = int(some[0])
    operation = rng.integers(8)
    if operation == 0:
        return refine.reassign(label_map, table, some, VOCABULARY[int(rng.integers(3))])
    if operation == 1:
        return refine.merge(label_map, table, some)
    if operation == 2:
        return refine.split_connected(label_map, table, one, connectivity=int(rng.integers(1, 3)))
    if operation == 3:
        return refine.delete(label_map, table, some)
    if operation == 4:
        return refine.fill_holes(label_map, table, one, overwrite_segments=bool(rng.integers(2)))
    if operation == 5:
        return refine.remove_small(label_map, table, int(rng.integers(1, 6)),
                                   ids=some if rng.integers(2) else None)
    painted = label_map.copy()  # a brush stroke: a rectangle of an old, new or zero id
    r, c = rng.integers(0, painted.shape[0]), rng.integers(0, painted.shape[1])
    value = rng.choice([0, one, refine.new_segment_id(label_map, table)])
    painted[r : r + int(rng.integers(1, 5)), c : c + int(rng.integers(1, 5))] = value
    default = VOCABULARY[int(rng.integers(3))] if rng.integers(2) else None
    return refine.sync(painted, table, VOCABULARY, default=default)


def test_random_edit_sequences_keep_map_and_table_consistent():
    rng = np.random.default_rng(20240607)
    for _ in range(200):
        label_map, table = _random_scene(rng)
        check_consistency(label_map, table, VOCABULARY)
        for _ in range(6):
            before_map, before_table = label_map.copy(), table.copy()
            new_map, new_table = _random_edit(rng, label_map, table)
            assert np.array_equal(label_map, before_map) and table.equals(before_table)
            check_consistency(new_map, new_table, VOCABULARY)
            old_area = dict(zip(table["id"].tolist(), table["area"].tolist()))
            for segment_id, area, source in zip(
                new_table["id"].tolist(), new_table["area"].tolist(), new_table["source"]
            ):
                assert source == "edited" or old_area[segment_id] == area
            label_map, table = new_map, new_table
