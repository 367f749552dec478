"""Errors raised when a weights file does not fit the model, with the offending names grouped."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from napari_odise.errors import UserError


class WeightsMismatchError(UserError, ValueError):
    """A checkpoint's tensors do not match what the model expects (names or shapes)."""


def group_by_prefix(keys: Iterable[str], depth: int = 3, limit: int = 12) -> str:
    """'a.b.c.x, a.b.c.y, a.d' -> 'a.b.c.* (2), a.d' — short enough to read in an error."""
    groups: dict[str, list[str]] = defaultdict(list)
    for key in sorted(keys):
        parts = key.split(".")
        groups[".".join(parts[:depth])].append(key)
    lines = []
    for prefix, members in list(groups.items())[:limit]:
        if len(members) == 1:
            lines.append(f"  {members[0]}")
        else:
            lines.append(f"  {prefix}.* ({len(members)} tensors, e.g. {members[0]})")
    if len(groups) > limit:
        lines.append(f"  ... and {len(groups) - limit} more groups")
    return "\n".join(lines)


def check_state_dict(
    expected: dict[str, tuple[int, ...]],
    got: dict,
    source: str,
    what: str,
) -> None:
    """Raise WeightsMismatchError naming missing, unexpected and mis-shaped tensors of ``source``."""
    missing = set(expected) - set(got)
    unexpected = set(got) - set(expected)
    wrong = {
        k: (tuple(got[k].shape), expected[k])
        for k in set(expected) & set(got)
        if tuple(got[k].shape) != tuple(expected[k])
    }
    if not (missing or unexpected or wrong):
        return
    parts = [f"{source} does not fit the {what}:"]
    if missing:
        parts.append(f"missing {len(missing)} tensors:\n{group_by_prefix(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} tensors:\n{group_by_prefix(unexpected)}")
    if wrong:
        shown = ", ".join(f"{k} {g} != expected {e}" for k, (g, e) in sorted(wrong.items())[:6])
        parts.append(f"{len(wrong)} tensors with the wrong shape: {shown}")
    parts.append("Check that this is the right file for this role (see `napari-odise weights status`).")
    raise WeightsMismatchError("\n".join(parts))
