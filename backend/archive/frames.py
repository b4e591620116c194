"""Reading prepared frames back: a byte range of the store, no decoding."""

import numpy as np

from backend.imaging.pixels import FrameLayout

from .models import Instance
from .storage import get_storage


class FrameUnavailable(LookupError):
    pass


def frame_layout(instance: Instance) -> FrameLayout:
    if instance.rows is None or instance.columns is None or instance.frame_samples is None:
        raise FrameUnavailable("instance has no frames")
    return FrameLayout(
        rows=instance.rows,
        columns=instance.columns,
        frames=instance.number_of_frames,
        samples=instance.frame_samples,
        dtype=instance.frame_dtype,
        photometric=instance.frame_photometric,
    )


def frame_bytes(instance: Instance, index: int) -> bytes:
    """Frame `index` (0-based) as raw little-endian values, rows × columns × samples."""
    if not instance.viewable:
        raise FrameUnavailable(instance.not_viewable_reason or "instance is not viewable")
    if not 0 <= index < instance.number_of_frames:
        raise FrameUnavailable(f"frame {index + 1} out of range 1..{instance.number_of_frames}")
    size = frame_layout(instance).frame_bytes
    offset = (instance.frames_offset or 0) + index * size
    return get_storage().read_range(instance.frames_key, offset, size)


def frame_array(instance: Instance, index: int) -> np.ndarray:
    layout = frame_layout(instance)
    shape = (layout.rows, layout.columns) + ((3,) if layout.samples == 3 else ())
    return np.frombuffer(frame_bytes(instance, index), dtype=layout.dtype).reshape(shape)
