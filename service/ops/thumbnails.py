"""Before/after coronal maximum-intensity projections (MIPs) as small PNG images.

The status page shows what the denoiser did to the last processed series, the way a reader
would first look at a whole-body PET: a coronal MIP (maximum over the anterior-posterior
axis), inverted grey (high uptake dark), head up, patient's right on the image left
(radiological convention). Both images share one grey window taken from the input MIP: with
separate windows a noisier input would be rescaled and the comparison would flatter or hide
the change.

Pixels come from the spool through the same loader the worker uses (``load_pet_volume``), so
slice order and Bq/ml rescaling are the worker's. Only the image leaves this module; no header
value is drawn into it, so it carries no patient data.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.image import imsave
from scipy.ndimage import zoom

from service.dicom.volume import load_pet_volume
from service.pipeline.records import SeriesView
from service.pipeline.spool import Spool
from service.pipeline.store import StateStore

__all__ = ["MipPair", "ThumbnailCache", "coronal_mip", "mip_png"]

#: Height of a thumbnail in pixels; the width follows from the physical aspect ratio.
THUMBNAIL_HEIGHT_PX = 320
#: Upper end of the grey window, as a percentile of the input MIP (robust to one hot voxel).
WINDOW_PERCENTILE = 99.5


def coronal_mip(
    bqml: npt.NDArray[np.floating], spacing_mm: tuple[float, float, float]
) -> npt.NDArray[np.float32]:
    """Coronal MIP of a (z, y, x) volume ordered feet to head, resampled to square pixels.

    Returns:
        A (rows, columns) image with the head at row 0 and the patient's right at column 0.
    """
    if bqml.ndim != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {bqml.shape}")
    projection = np.max(bqml, axis=1)[::-1, :]
    slice_mm, _, column_mm = spacing_mm
    height_mm = projection.shape[0] * slice_mm
    width_mm = projection.shape[1] * column_mm
    scale = THUMBNAIL_HEIGHT_PX / projection.shape[0]
    width_px = max(1, round(THUMBNAIL_HEIGHT_PX * width_mm / height_mm))
    factors = (scale, width_px / projection.shape[1])
    return np.asarray(zoom(projection.astype(np.float32), factors, order=1), dtype=np.float32)


def mip_png(image: npt.NDArray[np.floating], window_max: float) -> bytes:
    """Encode a MIP as PNG, inverted grey, window [0, ``window_max``] Bq/ml."""
    buffer = io.BytesIO()
    upper = window_max if window_max > 0 else 1.0
    imsave(buffer, image, cmap="gray_r", vmin=0.0, vmax=upper, format="png")
    return buffer.getvalue()


@dataclass(frozen=True)
class MipPair:
    """PNG bytes of the input and the derived series of one input series."""

    series_uid: str
    before_png: bytes
    after_png: bytes


def _mip_of(paths: Sequence[Path]) -> npt.NDArray[np.float32]:
    volume = load_pet_volume(paths)
    return coronal_mip(volume.bqml, volume.spacing_mm)


def render_pair(spool: Spool, state: StateStore, series: SeriesView) -> MipPair:
    """Render both MIPs of a processed series from its spool files.

    Raises:
        LookupError: the series has no derived output yet.
        PetHeaderError: the spool files cannot be stacked into a volume.
    """
    if series.output_key is None:
        raise LookupError(f"series {series.series_instance_uid} has no derived output")
    inputs = [spool.path_of(item.spool_key) for item in state.instances(series.series_instance_uid)]
    outputs = sorted(spool.path_of(series.output_key).glob("*.dcm"))
    before = _mip_of(inputs)
    after = _mip_of(outputs)
    window = float(np.percentile(before, WINDOW_PERCENTILE))
    return MipPair(series.series_instance_uid, mip_png(before, window), mip_png(after, window))


class ThumbnailCache:
    """Renders a series' MIP pair once per version of its output and keeps the last few.

    The page auto-refreshes; decoding a whole series on every refresh would cost a CPU second
    each time. The key includes ``written_at``, so a re-run with new output renders again.
    """

    def __init__(self, spool: Spool, state: StateStore, capacity: int = 8) -> None:
        self._spool = spool
        self._state = state
        self._capacity = capacity
        self._items: dict[tuple[str, str, float | None], MipPair] = {}
        self._lock = threading.Lock()

    def pair(self, series: SeriesView) -> MipPair:
        """The MIP pair of ``series``, rendered on first request.

        Raises:
            LookupError: the series has no derived output yet.
            PetHeaderError: the spool files cannot be stacked into a volume.
        """
        key = (series.series_instance_uid, series.output_key or "", series.written_at)
        with self._lock:
            cached = self._items.get(key)
            if cached is not None:
                return cached
            pair = render_pair(self._spool, self._state, series)
            self._items[key] = pair
            while len(self._items) > self._capacity:
                self._items.pop(next(iter(self._items)))
            return pair
