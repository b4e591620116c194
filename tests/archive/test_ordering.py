"""Slice order along the normal of ImageOrientationPatient (PS3.3 §C.7.6.2.1.1)."""

import math
import random

import pytest

from backend.archive.ordering import SliceInfo, slice_normal, slice_order

AXIAL = [1, 0, 0, 0, 1, 0]  # normal +z (feet to head)
SAGITTAL = [0, 1, 0, 0, 0, -1]  # normal -x
CORONAL = [1, 0, 0, 0, 0, -1]  # normal +y


def oblique(degrees: float) -> list[float]:
    """Axial tilted about the x axis (a gantry tilt)."""
    a = math.radians(degrees)
    return [1, 0, 0, 0, math.cos(a), math.sin(a)]


def stack(orientation, count=6, spacing=2.5, origin=(10.0, -20.0, 30.0)):
    """Slices along the orientation's normal, keys 0..count-1 in anatomical order,
    InstanceNumbers deliberately reversed so they cannot be what decides."""
    normal = slice_normal(orientation)
    return [
        SliceInfo(
            key=k,
            instance_number=count - k,
            image_position_patient=[
                o + k * spacing * n for o, n in zip(origin, normal, strict=True)
            ],
            image_orientation_patient=list(orientation),
        )
        for k in range(count)
    ]


def scrambled(slices, seed=7):
    copy = list(slices)
    random.Random(seed).shuffle(copy)
    return copy


@pytest.mark.parametrize(
    "orientation",
    [AXIAL, SAGITTAL, CORONAL, oblique(20), oblique(-35)],
    ids=["axial", "sagittal", "coronal", "oblique+20", "oblique-35"],
)
def test_it_orders_along_the_normal(orientation):
    slices = stack(orientation)
    assert slice_order(scrambled(slices)) == [0, 1, 2, 3, 4, 5]


def test_it_computes_the_normal_as_row_cross_column():
    assert slice_normal(AXIAL) == (0, 0, 1)
    assert slice_normal(CORONAL) == (0, 1, 0)
    assert slice_normal(SAGITTAL) == (-1, 0, 0)


def test_it_orders_sagittal_by_the_normal_not_by_z():
    # Positions differ only in x; sorting by z (a common mistake) would keep input order.
    slices = [SliceInfo(k, None, [-k * 3.0, 5.0, 7.0], SAGITTAL) for k in range(4)]
    assert slice_order(list(reversed(slices))) == [0, 1, 2, 3]


def test_it_breaks_ties_by_instance_number():
    slices = [
        SliceInfo("b", 2, [0, 0, 5], AXIAL),
        SliceInfo("a", 1, [0, 0, 5], AXIAL),
        SliceInfo("c", 3, [0, 0, 5.00001], AXIAL),  # within rounding: a tie too
        SliceInfo("first", 9, [0, 0, -5], AXIAL),
    ]
    assert slice_order(slices) == ["first", "a", "b", "c"]


def test_it_falls_back_to_instance_number_without_orientation():
    slices = [
        SliceInfo("c", 3, [0, 0, 1], None),
        SliceInfo("a", 1, [0, 0, 3], None),
        SliceInfo("b", 2, [0, 0, 2], None),
    ]
    assert slice_order(slices) == ["a", "b", "c"]


def test_it_falls_back_when_one_slice_lacks_a_position():
    slices = stack(AXIAL, count=3)
    slices[1] = SliceInfo(1, slices[1].instance_number, None, AXIAL)
    # Instance numbers are 3, 2, 1 for keys 0, 1, 2.
    assert slice_order(slices) == [2, 1, 0]


def test_it_falls_back_when_orientations_are_mixed():
    # A localiser (coronal) inside an axial series.
    slices = [*stack(AXIAL, count=3), SliceInfo("localiser", 0, [0, 0, 0], CORONAL)]
    assert slice_order(scrambled(slices)) == ["localiser", 2, 1, 0]


def test_it_puts_slices_without_instance_number_last():
    slices = [
        SliceInfo("none", None, None, None),
        SliceInfo("two", 2, None, None),
        SliceInfo("one", 1, None, None),
    ]
    assert slice_order(slices) == ["one", "two", "none"]


def test_it_orders_nothing():
    assert slice_order([]) == []


def test_it_orders_a_single_slice():
    assert slice_order([SliceInfo("only", None, None, None)]) == ["only"]
