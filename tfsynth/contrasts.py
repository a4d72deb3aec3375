"""The four MRI contrasts, their canonical order and every name users meet for them.

Canonical order (the generator's label index and the TFRecord channel order):
``t1, t1c, t2, flair``. BraTS 2020 names them ``t1, t1ce, t2, flair``; BraTS 2023
names them ``t1n, t1c, t2w, t2f``.
"""

from __future__ import annotations

from tfsynth.errors import TfsynthError

CONTRASTS: tuple[str, ...] = ("t1", "t1c", "t2", "flair")
NUM_CONTRASTS = len(CONTRASTS)

# Lower-case alias -> canonical name. Canonical names map to themselves.
ALIASES: dict[str, str] = {
    "t1": "t1",
    "t1n": "t1",
    "t1w": "t1",
    "t1native": "t1",
    "t1c": "t1c",
    "t1ce": "t1c",
    "t1gd": "t1c",
    "t1post": "t1c",
    "t2": "t2",
    "t2w": "t2",
    "flair": "flair",
    "t2f": "flair",
    "t2flair": "flair",
    "t2-flair": "flair",
}

# File-name suffixes of the two BraTS naming eras, in canonical order.
BRATS_NAMES: dict[str, dict[str, str]] = {
    "brats2020": {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair"},
    "brats2023": {"t1": "t1n", "t1c": "t1c", "t2": "t2w", "flair": "t2f"},
}


class UnknownContrastError(TfsynthError, ValueError):
    """A contrast name that is neither canonical nor a known alias."""


def canonical(name: str) -> str:
    """Returns the canonical name of a contrast given any known alias, in any case.

    Raises:
        UnknownContrastError: the name is not a known contrast; the message lists the valid ones.
    """
    key = str(name).strip().lower().replace("_", "")
    if key not in ALIASES:
        valid = ", ".join(sorted(ALIASES))
        raise UnknownContrastError(f"unknown contrast {name!r}; valid names: {valid}")
    return ALIASES[key]


def index(name: str) -> int:
    """Returns the label index (0..3) of a contrast in the canonical order."""
    return CONTRASTS.index(canonical(name))


def canonical_list(names) -> list[str]:
    """Canonicalises a list of names, rejecting duplicates after aliasing."""
    result = [canonical(name) for name in names]
    if len(set(result)) != len(result):
        raise TfsynthError(f"contrast listed twice: {list(names)}")
    return result
