"""Slice order within a series (no Django here).

Instances are sorted by their position along the slice normal, the cross product of the row
and column direction cosines of ImageOrientationPatient (PS3.3 §C.7.6.2.1.1), because file
names and InstanceNumber often do not follow anatomy. Without usable geometry (a missing
or inconsistent orientation, as in localisers mixed into a series) InstanceNumber decides.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SliceInfo:
    key: Any
    instance_number: int | None
    image_position_patient: Sequence[float] | None
    image_orientation_patient: Sequence[float] | None


def slice_normal(orientation: Sequence[float]) -> tuple[float, float, float]:
    rx, ry, rz, cx, cy, cz = orientation
    return (ry * cz - rz * cy, rz * cx - rx * cz, rx * cy - ry * cx)


def _same_orientation(slices: Sequence[SliceInfo], tolerance: float = 1e-3) -> bool:
    first = slices[0].image_orientation_patient
    if first is None:
        return False
    for s in slices:
        if s.image_orientation_patient is None or s.image_position_patient is None:
            return False
        if any(
            abs(a - b) > tolerance for a, b in zip(first, s.image_orientation_patient, strict=True)
        ):
            return False
    return True


def _by_number(s: SliceInfo) -> tuple:
    return (s.instance_number is None, s.instance_number or 0, str(s.key))


def slice_order(slices: Sequence[SliceInfo]) -> list[Any]:
    """Keys in display order: by distance along the normal, else by InstanceNumber."""
    if not slices:
        return []
    if len(slices) > 1 and _same_orientation(slices):
        # _same_orientation checked that every slice has both vectors.
        normal = slice_normal(slices[0].image_orientation_patient or ())

        def along_normal(s: SliceInfo) -> tuple:
            position = s.image_position_patient or ()
            distance = sum(p * n for p, n in zip(position, normal, strict=True))
            return (round(distance, 4), *_by_number(s))

        return [s.key for s in sorted(slices, key=along_normal)]
    return [s.key for s in sorted(slices, key=_by_number)]
