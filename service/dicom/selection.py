"""Which received instances the node denoises, ignores, or refuses, from the header alone.

Only original, attenuation-corrected PET in Bq/ml is denoised. Anything
that is not PET for us (CT, secondary captures, MIPs, localizers, and above all the node's
own output, so that routing loops are impossible) is IGNORED: not an error, nothing to
report. PET that we cannot process honestly is REJECTED with a reason the operator can read.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.uid import (
    EnhancedPETImageStorage,
    LegacyConvertedEnhancedPETImageStorage,
    PositronEmissionTomographyImageStorage,
)

from service.dicom import pet
from service.dicom.provenance import PROJECT_MANUFACTURER
from service.errors import PetHeaderError

__all__ = ["OWN_MODEL_NAME", "Eligibility", "Outcome", "assess_instance"]

# PS3.3 C.7.3.1.1.1 Modality (0008,0060) for PET.
MODALITY_PET = "PT"
# PS3.3 C.7.6.1.1.2 Image Type (0008,0008) value 1.
IMAGE_TYPE_ORIGINAL = "ORIGINAL"
# Image Type values vendors use for projections and scouts (PS3.3 C.8.9.4.1.1 and common
# vendor practice); such images are displays, not quantitative volumes.
_NON_VOLUME_IMAGE_TYPES = frozenset({"MIP", "PROJECTION IMAGE", "LOCALIZER", "REPROJECTION"})
# PS3.3 C.8.9.1.1.1 Series Type (0054,1000) value 2.
SERIES_TYPE_REPROJECTION = "REPROJECTION"
# Secondary Capture SOP classes all start with this root (PS3.4 Annex B.5).
_SECONDARY_CAPTURE_ROOT = "1.2.840.10008.5.1.4.1.1.7"
_ENHANCED_PET_CLASSES = frozenset({EnhancedPETImageStorage, LegacyConvertedEnhancedPETImageStorage})
# ManufacturerModelName the node's denoiser writes into Contributing Equipment.
OWN_MODEL_NAME = "UniPET"


class Outcome(enum.Enum):
    """What the node does with an instance."""

    ELIGIBLE = "eligible"
    IGNORED = "ignored"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Eligibility:
    """Outcome of the header check with the reason, kept in the state database."""

    eligible: bool
    outcome: Outcome
    reason: str


def _ignored(reason: str) -> Eligibility:
    return Eligibility(eligible=False, outcome=Outcome.IGNORED, reason=reason)


def _rejected(reason: str) -> Eligibility:
    return Eligibility(eligible=False, outcome=Outcome.REJECTED, reason=reason)


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
        return _ignored(f"modality {modality or '(none)'} is not PET")
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class.startswith(_SECONDARY_CAPTURE_ROOT):
        return _ignored("secondary capture, not a PET volume slice")
    flavours = _NON_VOLUME_IMAGE_TYPES.intersection(pet.image_type(ds)[2:])
    if flavours:
        return _ignored(f"image type {'/'.join(sorted(flavours))}, not a PET volume slice")
    series_type = ds.get("SeriesType")
    if series_type and len(series_type) > 1 and series_type[1] == SERIES_TYPE_REPROJECTION:
        return _ignored("series type REPROJECTION, not a PET volume")
    return None


def assess_instance(ds: Dataset) -> Eligibility:
    """Decide from the header whether the node denoises, ignores or rejects this instance.

    Order matters: our own output is recognised before anything else; then non-PET and
    non-volume objects are ignored; then PET that fails a quantitation rule is rejected with
    the first failing rule as the reason.
    """
    if _is_own_output(ds):
        return _ignored("our own output (Contributing Equipment names UniPET)")
    not_volume = _not_a_pet_volume(ds)
    if not_volume is not None:
        return not_volume
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class in _ENHANCED_PET_CLASSES:
        return _rejected("Enhanced PET not supported yet")
    if sop_class != PositronEmissionTomographyImageStorage:
        return _ignored(f"SOP class {sop_class or '(none)'} is not PET Image Storage")
    kind = pet.image_type(ds)
    if not kind or kind[0] != IMAGE_TYPE_ORIGINAL:
        return _rejected(f"image type {'/'.join(kind) or '(none)'}: only ORIGINAL PET is denoised")
    if pet.CORRECTION_ATTENUATION not in pet.corrected_image(ds):
        return _rejected("not attenuation corrected (CorrectedImage lacks ATTN)")
    try:
        image_units = pet.units(ds)
    except PetHeaderError as exc:
        return _rejected(str(exc))
    if image_units != pet.UNITS_BQML:
        return _rejected(f"units {image_units} not supported: no known conversion to Bq/ml")
    try:
        pet.suv_bw_factor(ds)
    except PetHeaderError as exc:
        return _rejected(f"SUV cannot be computed: {exc}")
    return Eligibility(
        eligible=True, outcome=Outcome.ELIGIBLE, reason="attenuation-corrected PET in Bq/ml"
    )
