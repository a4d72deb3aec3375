import pytest

from tfsynth import contrasts
from tfsynth.contrasts import CONTRASTS, UnknownContrastError, canonical, canonical_list, index
from tfsynth.errors import TfsynthError


@pytest.mark.parametrize(
    "alias, expected",
    [
        ("t1", "t1"),
        ("T1", "t1"),
        ("t1n", "t1"),
        ("T1w", "t1"),
        ("t1c", "t1c"),
        ("t1ce", "t1c"),
        ("T1CE", "t1c"),
        ("t1gd", "t1c"),
        ("T1Gd", "t1c"),
        ("t2", "t2"),
        ("t2w", "t2"),
        ("T2W", "t2"),
        ("flair", "flair"),
        ("FLAIR", "flair"),
        ("t2f", "flair"),
        ("T2-FLAIR", "flair"),
        ("t2_flair", "flair"),
    ],
)
def test_every_alias_maps_to_its_canonical_name(alias, expected):
    assert canonical(alias) == expected


def test_canonical_order_is_the_label_order():
    assert CONTRASTS == ("t1", "t1c", "t2", "flair")
    assert [index(name) for name in ("t1n", "t1ce", "t2w", "t2f")] == [0, 1, 2, 3]


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(UnknownContrastError) as error:
        canonical("dwi")
    message = str(error.value)
    assert "'dwi'" in message
    for name in ("t1", "t1ce", "t2w", "flair"):
        assert name in message


def test_duplicates_after_aliasing_are_rejected():
    assert canonical_list(["T1", "t2w"]) == ["t1", "t2"]
    with pytest.raises(TfsynthError, match="twice"):
        canonical_list(["t1ce", "t1c"])


def test_brats_file_names_cover_all_contrasts_in_both_eras():
    for naming in contrasts.BRATS_NAMES.values():
        assert tuple(naming) == CONTRASTS
        assert [canonical(suffix) for suffix in naming.values()] == list(CONTRASTS)
