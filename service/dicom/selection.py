"""Which received instances the node denoises, ignores, or refuses, from the header alone.

Only original, attenuation-corrected, static PET of a positron emitter,
in Bq/ml (or Philips CNTS with its scale factors), with a tracer the model card lists as
trained or tolerated, is denoised. Anything that is not PET for us (CT, secondary captures,
MIPs, localizers, SPECT or therapy nuclides stored as PT, tracers the network never saw, and
above all the node's own output, so that routing loops are impossible) is IGNORED with the
reason. PET that we cannot process honestly is REJECTED with a reason the operator can read.
Every outcome carries a short ``code`` for metrics.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.uid import (
    EnhancedPETImageStorage,
    LegacyConvertedEnhancedPETImageStorage,
    PositronEmissionTomographyImageStorage,
)

from service.dicom import pet, radionuclide
from service.dicom.provenance import PROJECT_MANUFACTURER
from service.errors import PetHeaderError

__all__ = [
    "DEFAULT_TRACER_POLICY",
    "OWN_MODEL_NAME",
    "REASON_CODES",
    "Eligibility",
    "Outcome",
    "TracerPolicy",
    "assess_instance",
]

# PS3.3 C.7.3.1.1.1 Modality (0008,0060) for PET.
MODALITY_PET = "PT"
# PS3.3 C.7.6.1.1.2 Image Type (0008,0008) value 1.
IMAGE_TYPE_ORIGINAL = "ORIGINAL"
# Image Type values vendors use for projections and scouts (PS3.3 C.8.9.4.1.1 and common
# vendor practice); such images are displays, not quantitative volumes.
_NON_VOLUME_IMAGE_TYPES = frozenset({"MIP", "PROJECTION IMAGE", "LOCALIZER", "REPROJECTION"})
# PS3.3 C.8.9.1.1.1 Series Type (0054,1000) value 2.
SERIES_TYPE_REPROJECTION = "REPROJECTION"
# PS3.16 CID 7203: (113040, DCM, "Lossy Compression"), the derivation lossy encoders record.
_LOSSY_COMPRESSION_CODE = "113040"
# PS3.3 C.8.9.1.1.1 Series Type value 1: time series the network does not model yet.
_SERIES_TYPES_NOT_STATIC = frozenset({"DYNAMIC", "GATED"})
# Secondary Capture SOP classes all start with this root (PS3.4 Annex B.5).
_SECONDARY_CAPTURE_ROOT = "1.2.840.10008.5.1.4.1.1.7"
_ENHANCED_PET_CLASSES = frozenset({EnhancedPETImageStorage, LegacyConvertedEnhancedPETImageStorage})
# Bits Allocated values pydicom decodes for PET (PS3.3 C.8.9.4 PET Image Module).
_DECODABLE_BITS_ALLOCATED = (16, 32)
# PS3.5 Table 6.2-1: PN is at most 64 characters per component group.
_PN_GROUP_MAX_CHARS = 64
# ManufacturerModelName the node's denoiser writes into Contributing Equipment.
OWN_MODEL_NAME = "UniPET"


class Outcome(enum.Enum):
    """What the node does with an instance."""

    ELIGIBLE = "eligible"
    IGNORED = "ignored"
    REJECTED = "rejected"


#: Every ``Eligibility.code`` the node writes (the ``reason`` label of the metric).
REASON_CODES = (
    "eligible",
    "own_output",
    "not_pet",
    "not_a_volume",
    "sop_class",
    "enhanced_pet",
    "not_original",
    "not_attenuation_corrected",
    "not_positron_emitter",
    "radionuclide_unknown",
    "tracer_not_trained",
    "dynamic_or_gated",
    "units",
    "suv",
    "invalid_volume_values",
    "patient_name_too_long",
)


@dataclass(frozen=True)
class Eligibility:
    """Outcome of the header check with the reason, kept in the state database."""

    eligible: bool
    outcome: Outcome
    reason: str
    code: str = "eligible"


@dataclass(frozen=True)
class TracerPolicy:
    """Tracers the model card lists as trained, and those a site tolerates (canonical names)."""

    trained: frozenset[str] = frozenset({radionuclide.TRACER_FDG})
    tolerated: frozenset[str] = frozenset()

    @property
    def accepted(self) -> frozenset[str]:
        """Trained or tolerated."""
        return self.trained | self.tolerated


#: UniPET's cards (1.0.0, 1.1.0) list F-18 FDG as the only training tracer; nothing else is
#: tolerated.
DEFAULT_TRACER_POLICY = TracerPolicy()


def _ignored(reason: str, code: str) -> Eligibility:
    return Eligibility(eligible=False, outcome=Outcome.IGNORED, reason=reason, code=code)


def _rejected(reason: str, code: str) -> Eligibility:
    return Eligibility(eligible=False, outcome=Outcome.REJECTED, reason=reason, code=code)


def _is_own_output(ds: Dataset) -> bool:
    """True if any Contributing Equipment item (PS3.3 C.7.5.1) names this node.

    Checked for every instance, not only those marked DERIVED: a router that rewrites Image
    Type must still not be able to feed our output back to us.
    """
    for item in ds.get("ContributingEquipmentSequence") or []:
        if str(item.get("ManufacturerModelName", "")).strip() == OWN_MODEL_NAME:
            return True
        if str(item.get("Manufacturer", "")).strip() == PROJECT_MANUFACTURER:
            return True
    return False


def _not_a_pet_volume(ds: Dataset) -> Eligibility | None:
    """IGNORED outcome for instances that are not PET slices of a volume, else None."""
    modality = str(ds.get("Modality", "")).strip().upper()
    if modality != MODALITY_PET:
        return _ignored(f"modality {modality or '(none)'} is not PET", "not_pet")
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class.startswith(_SECONDARY_CAPTURE_ROOT):
        return _ignored("secondary capture, not a PET volume slice", "not_a_volume")
    flavours = _NON_VOLUME_IMAGE_TYPES.intersection(pet.image_type(ds)[2:])
    if flavours:
        return _ignored(
            f"image type {'/'.join(sorted(flavours))}, not a PET volume slice", "not_a_volume"
        )
    series_type = ds.get("SeriesType")
    if series_type and len(series_type) > 1 and series_type[1] == SERIES_TYPE_REPROJECTION:
        return _ignored("series type REPROJECTION, not a PET volume", "not_a_volume")
    return None


def _volume_problem(ds: Dataset) -> str | None:
    """Why this slice cannot be placed in a volume with honest values, or None.

    Checked on receipt so such input is REJECTED at once with its reason rather than found
    by a worker (and retried, or sent DEAD): a zero, negative, NaN or infinite Rescale Slope
    (PS3.3 C.8.9.4.1.3: Bq/ml = stored x slope + intercept) would turn the image into
    near-blank or invalid values under a UniPET label; a slice without a position or
    orientation (PS3.3 C.7.6.2, Type 1) cannot be ordered.
    """
    try:
        slope, intercept = pet.rescale(ds)
    except PetHeaderError as exc:
        return str(exc)
    if not math.isfinite(slope) or slope <= 0.0:
        return f"RescaleSlope {slope} must be a positive finite number"
    if not math.isfinite(intercept):
        return f"RescaleIntercept {intercept} must be finite"
    try:
        pet.slice_position_mm(ds)
    except PetHeaderError as exc:
        return f"slice cannot be placed: {exc}"
    spacing = ds.get("PixelSpacing")
    try:
        values = [float(v) for v in spacing] if spacing is not None else []
    except (TypeError, ValueError):
        values = []
    if len(values) != 2 or not all(math.isfinite(v) and v > 0.0 for v in values):
        return f"PixelSpacing must be two positive numbers, got {spacing!r}"
    bits = ds.get("BitsAllocated")
    if bits not in _DECODABLE_BITS_ALLOCATED:
        return f"BitsAllocated {bits} cannot be decoded (PET Image stores 16 or 32 bits per pixel)"
    return None


def _output_problem(ds: Dataset) -> str | None:
    """Why the derived series could not carry this patient's identity unaltered, or None.

    Patient Name is copied into every output instance; a value longer than the PN VR allows
    (64 characters per component group, PS3.5 Table 6.2-1) would make the output invalid,
    and shortening it would change who the images belong to.
    """
    name = str(ds.get("PatientName", ""))
    if any(len(group) > _PN_GROUP_MAX_CHARS for group in name.split("=")):
        return "PatientName is longer than its VR allows (64 characters per component group)"
    return None


def _original_but_lossy_compressed(ds: Dataset) -> bool:
    """True if a DERIVED image's only derivation is lossy compression (PS3.3 C.7.6.1.1.5).

    Encoders such as dcmtk mark a lossy-compressed ORIGINAL image DERIVED with the Lossy
    Compression derivation code; it is still the scanner's reconstruction (the output says
    it was lossy compressed), unlike an image derived by post-processing.
    """
    if str(ds.get("LossyImageCompression", "")).strip() != "01":
        return False
    codes = {
        str(item.get("CodeValue", "")).strip() for item in ds.get("DerivationCodeSequence") or []
    }
    return codes == {_LOSSY_COMPRESSION_CODE}


def _not_our_tracer(ds: Dataset, policy: TracerPolicy) -> Eligibility | None:
    """IGNORED outcome unless a positron emitter with an accepted tracer, else None.

    A nuclide that is not a positron emitter, or cannot be identified, is SPECT or therapy
    imaging stored as PT for all the node can tell: not for a PET network.
    """
    items = ds.get("RadiopharmaceuticalInformationSequence") or []
    if not items:
        return _ignored(
            "RadiopharmaceuticalInformationSequence is empty: radionuclide unknown, not denoised",
            "radionuclide_unknown",
        )
    nuclide, note = radionuclide.identify_nuclide(items[0])
    if nuclide is None:
        return _ignored(f"{note}: not denoised", "radionuclide_unknown")
    if not nuclide.positron_emitter:
        return _ignored(
            f"radionuclide {nuclide.name} is not a positron emitter (SPECT or therapy "
            "imaging stored as PET): not for a PET network",
            "not_positron_emitter",
        )
    tracer = radionuclide.identify_tracer(items[0])
    if tracer is None or tracer not in policy.accepted:
        named = str(items[0].get("Radiopharmaceutical", "") or "").strip()[:32] or "unnamed"
        return _ignored(
            f"tracer {tracer or named} ({nuclide.name}) is not trained or tolerated by the "
            f"model card (accepted: {', '.join(sorted(policy.accepted))})",
            "tracer_not_trained",
        )
    return None


def _time_series(ds: Dataset) -> Eligibility | None:
    """REJECTED outcome for dynamic and gated series (PS3.3 C.8.9.1.1.1), else None."""
    series_type = ds.get("SeriesType")
    first = str(series_type[0]).strip().upper() if series_type else ""
    if first in _SERIES_TYPES_NOT_STATIC:
        return _rejected(
            f"series type {first}: dynamic and gated PET are not supported yet",
            "dynamic_or_gated",
        )
    for keyword in ("NumberOfTimeSlots", "NumberOfTimeSlices"):
        value = ds.get(keyword)
        if value not in (None, "") and int(value) > 1:
            return _rejected(
                f"{keyword} {int(value)}: dynamic and gated PET are not supported yet",
                "dynamic_or_gated",
            )
    return None


def assess_instance(ds: Dataset, policy: TracerPolicy = DEFAULT_TRACER_POLICY) -> Eligibility:
    """Decide from the header whether the node denoises, ignores or rejects this instance.

    Order matters: our own output is recognised before anything else; then non-PET and
    non-volume objects, and PET of nuclides or tracers that are not ours, are ignored; then
    PET that fails a quantitation rule is rejected with the first failing rule as reason.
    """
    if _is_own_output(ds):
        return _ignored("our own output (Contributing Equipment names UniPET)", "own_output")
    not_volume = _not_a_pet_volume(ds)
    if not_volume is not None:
        return not_volume
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class in _ENHANCED_PET_CLASSES:
        return _rejected("Enhanced PET not supported yet", "enhanced_pet")
    if sop_class != PositronEmissionTomographyImageStorage:
        return _ignored(f"SOP class {sop_class or '(none)'} is not PET Image Storage", "sop_class")
    not_ours = _not_our_tracer(ds, policy)
    if not_ours is not None:
        return not_ours
    time_series = _time_series(ds)
    if time_series is not None:
        return time_series
    kind = pet.image_type(ds)
    if not kind or (kind[0] != IMAGE_TYPE_ORIGINAL and not _original_but_lossy_compressed(ds)):
        return _rejected(
            f"image type {'/'.join(kind) or '(none)'}: only ORIGINAL PET is denoised",
            "not_original",
        )
    if pet.CORRECTION_ATTENUATION not in pet.corrected_image(ds):
        return _rejected(
            "not attenuation corrected (CorrectedImage lacks ATTN)", "not_attenuation_corrected"
        )
    try:
        pet.activity_scale(ds)
    except PetHeaderError as exc:
        return _rejected(str(exc), "units")
    try:
        pet.suv_bw_factor(ds)
    except PetHeaderError as exc:
        return _rejected(f"SUV cannot be computed: {exc}", "suv")
    volume_problem = _volume_problem(ds)
    if volume_problem is not None:
        return _rejected(volume_problem, "invalid_volume_values")
    output_problem = _output_problem(ds)
    if output_problem is not None:
        return _rejected(output_problem, "patient_name_too_long")
    return Eligibility(
        eligible=True, outcome=Outcome.ELIGIBLE, reason="attenuation-corrected PET in Bq/ml"
    )
