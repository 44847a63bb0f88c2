"""Model-side inference: a whole (z, y, x) PET volume in Bq/ml in, a denoised one out.

The network is 2.5D, so a volume is processed a few slices at a time (``batch_slices``), and
a slice larger than ``tile_size`` is cut into overlapping in-plane tiles whose outputs are
blended with linear ramps across the overlap. Network memory is therefore bounded by the
batch of slices and the tile, whatever the volume size; what scales is the input and output
volumes, the style encoder's half-resolution features of whole slices (16 channels), and a
few volume-sized float32 arrays of the DRF estimate (~1 GB peak RSS for 192x192x400 on CPU).

SAN style codes are computed once per slice from the whole slice, before tiling, and passed
to every tile of it: the codes summarise the slice's noise, and codes drawn from each tile
would differ from tile to tile and leave seams.

The DRF estimate is the calibrated noise statistic of ``model.drf_estimate`` applied to the
input, when the weights file carries a calibration; otherwise it is None.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from scipy import ndimage

from model.cpu_memory import keep_freed_memory
from model.drf_estimate import DrfCalibration
from model.errors import WeightsError
from model.networks import StyleCodes, UniPETNet
from model.patches import slice_stack
from model.weights_io import load_network, sha256_file

__all__ = [
    "DenoisedVolume",
    "Denoiser",
    "blend_ramp",
    "body_window",
    "load_denoiser",
    "tile_starts",
]

#: Slice-mean SUV above which a pixel column counts as body for the inference box: well
#: under any tissue's uptake averaged over a whole-body scan, well over air and scatter.
BODY_WINDOW_SUV = 0.05
#: Pixels of air kept around the body (more than the network's receptive field reaches).
BODY_WINDOW_MARGIN = 24
#: Slices per forward pass when none is asked for. On CPU the feature maps of a couple of
#: 192x192 slices stay in cache: on a 2-core EPYC a 400x192x192 volume took 14.0-14.7 s in
#: batches of 2, 15.6-17.5 s in 4 and 17.1-17.8 s in 8 (back to back in one process; 16
#: full-resolution channels of 8 slices are 19 MB per map). A GPU wants larger batches: on
#: an H200 the network took 0.53 s for that volume in batches of 8, 0.26 s in 16, 0.22 s in
#: 32 and 0.24 s in 64 (benchmarks/bench_slices_per_pass.py); 32 slices of a 256x256 tile
#: need well under 2 GB of feature maps, so smaller GPUs fit them too.
CPU_BATCH_SLICES = 2
GPU_BATCH_SLICES = 32

FloatVolume = npt.NDArray[np.float32]


@dataclass(frozen=True)
class DenoisedVolume:
    """A denoised volume in Bq/ml and the facts the node records about how it was made."""

    volume_bqml: FloatVolume
    drf_estimate: float | None
    seconds: float
    device: str
    version: str
    weights_sha256: str


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` covering ``length``, neighbours sharing >= overlap.

    Raises:
        ValueError: the overlap is not smaller than the tile.
    """
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got overlap={overlap}, tile={tile}")
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return [*starts, length - tile]


def blend_ramp(tile: int, overlap: int, ramp_start: bool, ramp_end: bool) -> FloatVolume:
    """1D blending weight of one tile: linear ramps over ``overlap`` on shared sides, else 1.

    Ramp values are in (0, 1], never 0, so every pixel keeps a positive total weight.
    """
    weight = np.ones(tile, dtype=np.float32)
    ramp = np.arange(1, overlap + 1, dtype=np.float32) / (overlap + 1)
    if ramp_start and overlap:
        weight[:overlap] = ramp
    if ramp_end and overlap:
        weight[tile - overlap :] = np.minimum(weight[tile - overlap :], ramp[::-1])
    return weight


class Denoiser:
    """A trained UniPET (or baseline) network ready to denoise whole volumes.

    Args:
        weights_path: safetensors file written by ``model.train``.
        threads: torch intra-op threads (process-wide setting); None leaves torch's default.
        device: "auto" (CUDA when present, else CPU), "cpu", "cuda", "cuda:1", ...
        tile_size: largest in-plane tile edge in pixels; bigger slices are tiled.
        tile_overlap: pixels shared by neighbouring tiles, blended linearly.
        batch_slices: slices denoised per forward pass; None: ``CPU_BATCH_SLICES`` on CPU,
            ``GPU_BATCH_SLICES`` on a GPU.
        crop_to_body: denoise only the in-plane box holding the body (``body_window``).
        estimate_alongside: make the DRF estimate (SciPy work on the CPU, which releases the
            interpreter lock) in a thread while the network runs; None: on a GPU, where the
            two overlap, not on CPU, where they would share the same cores.
    """

    def __init__(
        self,
        weights_path: Path,
        *,
        threads: int | None = None,
        device: str = "auto",
        tile_size: int = 256,
        tile_overlap: int = 32,
        batch_slices: int | None = None,
        crop_to_body: bool = True,
        estimate_alongside: bool | None = None,
    ) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if batch_slices is None:
            on_cpu = torch.device(device).type == "cpu"
            batch_slices = CPU_BATCH_SLICES if on_cpu else GPU_BATCH_SLICES
        if tile_size < 16 or batch_slices < 1:
            raise ValueError(
                f"tile_size >= 16 and batch_slices >= 1, got {tile_size}, {batch_slices}"
            )
        if not 0 <= tile_overlap < tile_size:
            raise ValueError(f"tile_overlap must be in [0, tile_size), got {tile_overlap}")
        self.device = torch.device(device)
        self.net, header = load_network(Path(weights_path), self.device)
        if self.device.type == "cpu":
            # oneDNN's convolutions run about a quarter faster on CPU with the weights in
            # channels-last order (measured on 192x192 slice batches); same figures.
            # (Module.to documents memory_format; its type stubs leave the keyword out)
            self.net = self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            keep_freed_memory()
        self.version = header.get("version", "unknown")
        self.drf_calibration = _calibration(header, Path(weights_path))
        self.weights_sha256 = sha256_file(Path(weights_path))
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.batch_slices = batch_slices
        self.crop_to_body = crop_to_body
        self.estimate_alongside = (
            self.device.type != "cpu" if estimate_alongside is None else estimate_alongside
        )

    @property
    def network(self) -> UniPETNet:
        """The loaded network (eval mode)."""
        return self.net

    def denoise(
        self,
        volume_bqml: npt.NDArray[np.floating],
        suv_per_bqml: float,
        spacing_mm: tuple[float, float, float] | None = None,
        patient_weight_kg: float | None = None,
    ) -> DenoisedVolume:
        """Denoise a (z, y, x) volume in Bq/ml; ``suv_per_bqml`` converts it to SUV and back.

        ``spacing_mm`` (z, y, x) and ``patient_weight_kg`` are needed for the DRF estimate of
        calibrations that read the voxel size and the weight; without them it is None.

        Raises:
            ValueError: not a finite 3D volume, or a non-positive SUV factor.
        """
        if volume_bqml.ndim != 3 or not np.isfinite(volume_bqml).all():
            raise ValueError(f"expected a finite 3D volume, got shape {volume_bqml.shape}")
        if not (math.isfinite(suv_per_bqml) and suv_per_bqml > 0):
            raise ValueError(f"suv_per_bqml must be positive and finite, got {suv_per_bqml}")
        start = time.perf_counter()
        suv = volume_bqml.astype(np.float32) * np.float32(suv_per_bqml)
        estimate_args = (volume_bqml, suv_per_bqml, spacing_mm, patient_weight_kg)
        if self.estimate_alongside:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="drf-estimate") as pool:
                estimating = pool.submit(self.estimate_drf, *estimate_args)
                denoised_suv = self.denoise_suv(suv)
                drf_estimate = estimating.result()
        else:
            denoised_suv = self.denoise_suv(suv)
            drf_estimate = self.estimate_drf(*estimate_args)
        return DenoisedVolume(
            volume_bqml=denoised_suv / np.float32(suv_per_bqml),
            drf_estimate=drf_estimate,
            seconds=time.perf_counter() - start,
            device=str(self.device),
            version=self.version,
            weights_sha256=self.weights_sha256,
        )

    def estimate_drf(
        self,
        volume_bqml: npt.NDArray[np.floating],
        suv_per_bqml: float,
        spacing_mm: tuple[float, float, float] | None = None,
        patient_weight_kg: float | None = None,
    ) -> float | None:
        """Calibrated DRF estimate; None without a calibration, without body voxels, or
        without the spacing or weight the calibration reads."""
        if self.drf_calibration is None:
            return None
        try:
            return self.drf_calibration.estimate(
                volume_bqml, suv_per_bqml, spacing_mm, patient_weight_kg
            )
        except ValueError:
            return None

    def denoise_suv(self, suv: FloatVolume) -> FloatVolume:
        """Denoise a (z, y, x) volume in SUV, only over the in-plane box that holds the body.

        Clinical matrices are mostly air (a 440x440 matrix of 1.65 mm pixels is 73 cm
        across, a patient 35-45 cm): cutting it away makes inference several times faster.
        Air outside the box is returned as it came in (the residual network leaves air as
        it is anyway).
        """
        window = body_window(suv) if self.crop_to_body else None
        if window is None:
            return self._denoise_whole(suv)
        out = np.array(suv, dtype=np.float32, copy=True)
        box = (slice(None), *window)
        out[box] = self._denoise_whole(np.ascontiguousarray(suv[box]))
        return out

    def _denoise_whole(self, suv: FloatVolume) -> FloatVolume:
        """Denoise every voxel of a (z, y, x) volume in SUV."""
        out = np.empty_like(suv, dtype=np.float32)
        context = self.net.config.context_slices
        with torch.inference_mode():
            for first in range(0, suv.shape[0], self.batch_slices):
                centres = np.arange(first, min(first + self.batch_slices, suv.shape[0]))
                stack = torch.from_numpy(slice_stack(suv, centres, context)).to(self.device)
                codes = self.net.style_codes(stack)
                out[centres] = self._denoise_slices(stack, codes).cpu().numpy()
        return out

    def _denoise_slices(self, stack: torch.Tensor, codes: StyleCodes | None) -> torch.Tensor:
        """Centre slices (N, H, W) of a stack batch, tiled in-plane when it is large."""
        height, width = stack.shape[-2:]
        if height <= self.tile_size and width <= self.tile_size:
            whole: torch.Tensor = self.net(stack, codes)
            return whole[:, 0]
        total = torch.zeros((stack.shape[0], height, width), device=stack.device)
        weight_sum = torch.zeros((height, width), device=stack.device)
        ys = tile_starts(height, self.tile_size, self.tile_overlap)
        xs = tile_starts(width, self.tile_size, self.tile_overlap)
        for i, y in enumerate(ys):
            for j, x in enumerate(xs):
                rows = slice(y, y + min(self.tile_size, height))
                cols = slice(x, x + min(self.tile_size, width))
                tile: torch.Tensor = self.net(stack[:, :, rows, cols], codes)
                weight = torch.from_numpy(
                    np.outer(
                        blend_ramp(tile.shape[-2], self.tile_overlap, i > 0, i < len(ys) - 1),
                        blend_ramp(tile.shape[-1], self.tile_overlap, j > 0, j < len(xs) - 1),
                    )
                ).to(stack.device)
                total[:, rows, cols] += tile[:, 0] * weight
                weight_sum[rows, cols] += weight
        return total / weight_sum


def body_window(
    suv: FloatVolume, threshold_suv: float = BODY_WINDOW_SUV, margin_px: int = BODY_WINDOW_MARGIN
) -> tuple[slice, slice] | None:
    """In-plane rows and columns holding every voxel whose slice-mean SUV, smoothed over
    5x5 pixels, exceeds ``threshold_suv``, grown by ``margin_px``; None when that is the
    whole plane or nothing (then the whole volume is denoised)."""
    plane = ndimage.uniform_filter(suv.mean(axis=0, dtype=np.float32), 5)
    ys, xs = np.nonzero(plane > threshold_suv)
    if ys.size == 0:
        return None
    height, width = plane.shape
    rows = slice(max(0, int(ys.min()) - margin_px), min(height, int(ys.max()) + 1 + margin_px))
    cols = slice(max(0, int(xs.min()) - margin_px), min(width, int(xs.max()) + 1 + margin_px))
    if rows == slice(0, height) and cols == slice(0, width):
        return None
    return rows, cols


def _calibration(header: dict[str, str], path: Path) -> DrfCalibration | None:
    """The DRF calibration in a weights header, or None when the file has none.

    Raises:
        WeightsError: the header has a calibration this version cannot read.
    """
    text = header.get("drf_calibration")
    if text is None:
        return None
    try:
        return DrfCalibration.from_json(text)
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{path}: unreadable DRF calibration: {exc}") from exc


def load_denoiser(
    weights_path: str | Path,
    *,
    threads: int | None = None,
    device: str = "auto",
    tile_size: int = 256,
    tile_overlap: int = 32,
    batch_slices: int | None = None,
    crop_to_body: bool = True,
    estimate_alongside: bool | None = None,
) -> Denoiser:
    """Load a trained network from a safetensors file (once per process); see :class:`Denoiser`.

    Raises:
        WeightsError: the file is missing, corrupt or declares another architecture.
        ValueError: a tiling or batching argument is out of range.
    """
    return Denoiser(
        Path(weights_path),
        threads=threads,
        device=device,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        batch_slices=batch_slices,
        crop_to_body=crop_to_body,
        estimate_alongside=estimate_alongside,
    )
