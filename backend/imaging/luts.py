"""Lookup tables of the grey-scale pipeline read from a dataset: the Modality LUT Sequence
(0028,3000), PS3.3 C.11.1, and the VOI LUT Sequence (0028,3010), C.11.2, so that the viewer
can apply them on the GPU. Imports no Django.

A table is {"first": first input value mapped, "bits": bits per entry, "data": [entries],
"explanation": LUTExplanation}: input values below `first` map to the first entry, values
at or beyond first + len(data) to the last (C.11.2.1.1).
"""

from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import DataElement

MAX_TABLES = 8  # alternative VOI LUTs a file may offer; more are ignored
MAX_ENTRIES = 65536  # a LUT Descriptor's first value 0 means 2**16 (C.11.1.1.1)


def lut_tables(ds: pydicom.Dataset, keyword: str) -> list[dict[str, Any]]:
    """The usable tables of the sequence `keyword` (ModalityLUTSequence, VOILUTSequence);
    an item whose descriptor and data disagree is left out."""
    try:
        items = list(ds.get(keyword) or [])
    except Exception:  # a sequence pydicom cannot parse is no table
        return []
    tables = []
    for item in items[:MAX_TABLES]:
        table = _table(item, _signed_input(ds, keyword), _little_endian(ds))
        if table is not None:
            tables.append(table)
    return tables


def _table(item: pydicom.Dataset, signed: bool, little_endian: bool) -> dict[str, Any] | None:
    try:
        descriptor = [int(v) for v in item.LUTDescriptor]
        data = _entries(item["LUTData"], little_endian)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    if len(descriptor) != 3 or not 1 <= descriptor[2] <= 16:
        return None
    count, first, bits = descriptor[0] or MAX_ENTRIES, descriptor[1], descriptor[2]
    if len(data) < count:
        return None
    # The first value mapped is US or SS (C.11.1.1.1): pydicom may read -1024 as 64512.
    if signed and first >= 0x8000:
        first -= 0x10000
    return {
        "first": first,
        "bits": bits,
        "data": [int(v) for v in data[:count]],
        "explanation": str(item.get("LUTExplanation", "") or "")[:64],
    }


def _entries(element: DataElement, little_endian: bool) -> np.ndarray:
    """LUT Data is US or OW (C.11.1.1.2): 16-bit words either way."""
    value = element.value
    if isinstance(value, bytes | bytearray):
        return np.frombuffer(value[: len(value) // 2 * 2], dtype="<u2" if little_endian else ">u2")
    if isinstance(value, int):
        return np.array([value])
    return np.asarray(list(value), dtype=np.int64)


def _signed_input(ds: pydicom.Dataset, keyword: str) -> bool:
    """Can the values a table maps be negative? Stored values when the pixels are signed;
    modality values (the VOI LUT's input) also when rescaling can make them negative."""
    if ds.get("PixelRepresentation") == 1:
        return True
    if keyword == "VOILUTSequence" and not ds.get("ModalityLUTSequence"):
        try:
            return float(ds.get("RescaleIntercept") or 0) < 0
        except (TypeError, ValueError):
            return False
    return False


def _little_endian(ds: pydicom.Dataset) -> bool:
    encoding = getattr(ds, "original_encoding", (None, True))
    return encoding[1] is not False
