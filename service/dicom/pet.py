"""PET header facts read from one dataset, without decoding pixels.

Everything that decides whether a PET image can be quantified (SUV) or placed in a volume is
read here, once, with a ``PetHeaderError`` that names the missing or inconsistent attribute.
The SUV factor follows the QIBA/UPICT vendor-neutral pseudo-code for SUVbw (body weight),
restricted to what the PET Image IOD guarantees (PS3.3 C.8.9.4 PET Image Module and C.8.9.2
PET Isotope Module). The one vendor convention honoured is Philips' Units CNTS with its private
scale factors (group 7053, "Philips PET Private Group"), since it is the only way to Bq/ml
for those images; the factors are checked against the standard header.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta

import numpy as np
from pydicom.dataset import Dataset
from pydicom.valuerep import DA, DT, TM

from service.errors import PetHeaderError

__all__ = [
    "CORRECTION_ATTENUATION",
    "CORRECTION_DECAY",
    "DECAY_CORRECTION_ADMIN",
    "DECAY_CORRECTION_NONE",
    "DECAY_CORRECTION_START",
    "UNITS_BQML",
    "UNITS_CNTS",
    "activity_scale",
    "corrected_image",
    "decay_correction",
    "expected_instance_count",
    "image_orientation",
    "image_type",
    "patient_weight_kg",
    "rescale",
    "slice_normal",
    "slice_position_mm",
    "suv_bw_factor",
    "units",
]

# PS3.3 C.8.9.1.1.3 Units (0054,1001) and C.8.9.1.1.4 Decay Correction (0054,1102).
UNITS_BQML = "BQML"
UNITS_CNTS = "CNTS"
DECAY_CORRECTION_START = "START"
DECAY_CORRECTION_ADMIN = "ADMIN"
DECAY_CORRECTION_NONE = "NONE"
# PS3.3 C.8.9.4.1.2 Corrected Image (0028,0051) values.
CORRECTION_ATTENUATION = "ATTN"
CORRECTION_DECAY = "DECY"

_ORIENTATION_TOLERANCE = 1e-3
# Philips PET private block (vendor conformance statement): (7053,1000) SUV Scale Factor
# turns rescaled CNTS into SUVbw; (7053,1009) Activity Concentration Scale Factor into Bq/ml.
PHILIPS_PRIVATE_GROUP = 0x7053
PHILIPS_PRIVATE_CREATOR = "Philips PET Private Group"
PHILIPS_SUV_SCALE_OFFSET = 0x00
PHILIPS_ACTIVITY_SCALE_OFFSET = 0x09
# The two Philips factors must agree this well (the SUV factor is written with 3-4 digits).
_PHILIPS_AGREEMENT = 0.01
# Injection longer ago than this many half-lives is not a clinical PET scan: a date-shifted
# archive or a wrong clock; the decay factor (2**-10 < 0.1 %) would make SUV meaningless.
_MAX_UPTAKE_HALF_LIVES = 10.0


def _require(ds: Dataset, keyword: str) -> object:
    """Return the value of ``keyword`` or raise a ``PetHeaderError`` naming it."""
    value = ds.get(keyword)
    if value is None or value == "":
        raise PetHeaderError(f"{keyword} is missing or empty")
    return value


def _float(ds: Dataset, keyword: str) -> float:
    value = _require(ds, keyword)
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise PetHeaderError(f"{keyword} is not a number: {value!r}") from exc


def units(ds: Dataset) -> str:
    """Units (0054,1001) of the rescaled pixel values, upper case (e.g. "BQML", "CNTS")."""
    return str(_require(ds, "Units")).strip().upper()


def decay_correction(ds: Dataset) -> str:
    """Decay Correction (0054,1102): "START", "ADMIN" or "NONE" (PS3.3 C.8.9.1.1.4)."""
    return str(_require(ds, "DecayCorrection")).strip().upper()


def corrected_image(ds: Dataset) -> frozenset[str]:
    """Corrected Image (0028,0051) values; empty when absent (nothing is known corrected)."""
    value = ds.get("CorrectedImage")
    if value is None or value == "":
        return frozenset()
    values = [value] if isinstance(value, str) else list(value)
    return frozenset(str(v).strip().upper() for v in values)


def image_type(ds: Dataset) -> tuple[str, ...]:
    """Image Type (0008,0008) values, upper case; empty tuple when absent."""
    value = ds.get("ImageType")
    if value is None or value == "":
        return ()
    values = [value] if isinstance(value, str) else list(value)
    return tuple(str(v).strip().upper() for v in values)


def rescale(ds: Dataset) -> tuple[float, float]:
    """(RescaleSlope, RescaleIntercept) of one PET slice (PS3.3 C.8.9.4.1.3; both Type 1)."""
    return _float(ds, "RescaleSlope"), _float(ds, "RescaleIntercept")


def image_orientation(ds: Dataset) -> np.ndarray:
    """ImageOrientationPatient as two unit vectors, shape (2, 3): row and column directions.

    Raises:
        PetHeaderError: If absent, not six numbers, or the vectors are not orthonormal.
    """
    value = _require(ds, "ImageOrientationPatient")
    try:
        cosines = np.asarray([float(v) for v in value], dtype=np.float64)  # type: ignore[attr-defined]
    except (TypeError, ValueError) as exc:
        raise PetHeaderError(f"ImageOrientationPatient is not numeric: {value!r}") from exc
    if cosines.shape != (6,):
        raise PetHeaderError(f"ImageOrientationPatient needs 6 values, got {cosines.size}")
    vectors = cosines.reshape(2, 3)
    norms = np.linalg.norm(vectors, axis=1)
    dot = float(vectors[0] @ vectors[1])
    if np.any(np.abs(norms - 1.0) > _ORIENTATION_TOLERANCE) or abs(dot) > _ORIENTATION_TOLERANCE:
        raise PetHeaderError(f"ImageOrientationPatient is not orthonormal: {value!r}")
    return vectors


def slice_normal(ds: Dataset) -> np.ndarray:
    """Unit normal of the image plane: row direction x column direction (PS3.3 C.7.6.2.1.1)."""
    row, column = image_orientation(ds)
    normal: np.ndarray = np.cross(row, column)
    return normal


def slice_position_mm(ds: Dataset) -> float:
    """Position of the slice along the plane normal, in mm.

    For axial slices (1\\0\\0\\0\\1\\0) the normal is +Z (towards the head), so sorting by this
    value orders slices feet to head. SliceLocation (0020,1041) is Type 3 and not reliable, so
    ImagePositionPatient (0020,0032) is projected instead.
    """
    value = _require(ds, "ImagePositionPatient")
    try:
        position = np.asarray([float(v) for v in value], dtype=np.float64)  # type: ignore[attr-defined]
    except (TypeError, ValueError) as exc:
        raise PetHeaderError(f"ImagePositionPatient is not numeric: {value!r}") from exc
    if position.shape != (3,):
        raise PetHeaderError(f"ImagePositionPatient needs 3 values, got {position.size}")
    return float(position @ slice_normal(ds))


def expected_instance_count(ds: Dataset) -> int | None:
    """Number of instances the whole series should have, or None if the header cannot say.

    PS3.3 C.8.9.1.1: NumberOfSlices (0054,0081) per time slot, times NumberOfTimeSlots
    (0054,0071) for gated series or NumberOfTimeSlices (0054,0101) for dynamic series. A
    multi-frame instance holds several of those images, so the count is divided by frames.
    """
    slices = ds.get("NumberOfSlices")
    if slices is None or slices == "" or int(slices) <= 0:
        return None
    images = int(slices)
    for keyword in ("NumberOfTimeSlots", "NumberOfTimeSlices"):
        value = ds.get(keyword)
        if value not in (None, "") and int(value) > 0:
            images *= int(value)
    frames_value = ds.get("NumberOfFrames")
    frames = int(frames_value) if frames_value not in (None, "") else 1
    if frames <= 0 or images % frames != 0:
        return None
    return images // frames


def _date(ds: Dataset, keyword: str) -> date:
    value = _require(ds, keyword)
    try:
        return DA(str(value))
    except ValueError as exc:
        raise PetHeaderError(f"{keyword} is not a DICOM date: {value!r}") from exc


def _time(value: object, keyword: str) -> time:
    try:
        parsed = TM(str(value))
    except ValueError as exc:
        raise PetHeaderError(f"{keyword} is not a DICOM time: {value!r}") from exc
    if parsed is None:
        raise PetHeaderError(f"{keyword} is empty")
    return parsed


def _datetime(ds: Dataset, date_keyword: str, time_keyword: str) -> datetime:
    return datetime.combine(
        _date(ds, date_keyword), _time(_require(ds, time_keyword), time_keyword)
    )


def _radiopharmaceutical(ds: Dataset) -> Dataset:
    sequence = ds.get("RadiopharmaceuticalInformationSequence")
    if not sequence:
        raise PetHeaderError("RadiopharmaceuticalInformationSequence is missing or empty")
    item: Dataset = sequence[0]
    return item


def _injection_datetime(ds: Dataset, radiopharmaceutical: Dataset, scan: datetime) -> datetime:
    """Injection time: the DT attribute if present, else the time on the scan's date.

    A start time later in the day than the scan means the injection was before midnight
    (QIBA pseudo-code note on series spanning midnight). A timezone offset in the DT value is
    dropped: the node assumes, like the series times, local time of the scanner.
    """
    start_dt = radiopharmaceutical.get("RadiopharmaceuticalStartDateTime")
    if start_dt not in (None, ""):
        try:
            parsed = DT(str(start_dt))
        except ValueError as exc:
            raise PetHeaderError(
                f"RadiopharmaceuticalStartDateTime is not a DICOM date time: {start_dt!r}"
            ) from exc
        return parsed.replace(tzinfo=None)
    start_tm = radiopharmaceutical.get("RadiopharmaceuticalStartTime")
    if start_tm in (None, ""):
        raise PetHeaderError(
            "neither RadiopharmaceuticalStartDateTime nor RadiopharmaceuticalStartTime is present"
        )
    injection = datetime.combine(scan.date(), _time(start_tm, "RadiopharmaceuticalStartTime"))
    if injection > scan:
        injection -= timedelta(days=1)
    return injection


def _scan_datetime(ds: Dataset, half_life_s: float) -> datetime:
    """Reference time of the decay correction for DecayCorrection START (QIBA rule).

    Series Date/Time is the scan start unless it is after the Acquisition Date/Time, which
    happens when a post-processing step rewrote it; then the start is back-computed from the
    acquisition start, FrameReferenceTime (0054,1300) and ActualFrameDuration (0018,1242).
    """
    series = _datetime(ds, "SeriesDate", "SeriesTime")
    if ds.get("AcquisitionDate") in (None, "") or ds.get("AcquisitionTime") in (None, ""):
        return series
    acquisition = _datetime(ds, "AcquisitionDate", "AcquisitionTime")
    if series <= acquisition:
        return series
    reference_ms = float(ds.get("FrameReferenceTime") or 0.0)
    duration_ms = float(ds.get("ActualFrameDuration") or 0.0)
    if reference_ms <= 0.0 or duration_ms <= 0.0:
        return acquisition
    decay_constant = math.log(2.0) / half_life_s
    decay_during_frame = decay_constant * duration_ms / 1000.0
    average_count_rate_s = (
        math.log(decay_during_frame / (1.0 - math.exp(-decay_during_frame))) / decay_constant
    )
    return acquisition - timedelta(seconds=reference_ms / 1000.0 - average_count_rate_s)


def _philips_factor(ds: Dataset, offset: int) -> float | None:
    """A Philips group 7053 scale factor, or None when absent (VR may be DS or UN)."""
    try:
        element = ds.get_private_item(PHILIPS_PRIVATE_GROUP, offset, PHILIPS_PRIVATE_CREATOR)
    except KeyError:
        return None
    value = element.value
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace").strip("\x00 ")
    try:
        factor = float(value)
    except (TypeError, ValueError) as exc:
        raise PetHeaderError(
            f"Philips private scale factor (7053,10{offset:02X}) is not a number: {value!r}"
        ) from exc
    if not math.isfinite(factor) or factor <= 0.0:
        raise PetHeaderError(f"Philips private scale factor (7053,10{offset:02X}) is {factor}")
    return factor


def activity_scale(ds: Dataset) -> float:
    """Factor that turns rescaled pixel values into Bq/ml: 1 for Units BQML.

    Units CNTS (Philips) is converted with the private SUV Scale Factor (7053,1000) divided
    by the SUVbw factor of the standard header, so SUV from our Bq/ml equals the SUV the
    vendor's own workstation showed; without it, with the Activity Concentration Scale
    Factor (7053,1009). When both are present they must agree within 1 %.

    Raises:
        PetHeaderError: Other units, CNTS without either private factor, or disagreement.
    """
    image_units = units(ds)
    if image_units == UNITS_BQML:
        return 1.0
    if image_units != UNITS_CNTS:
        raise PetHeaderError(f"units {image_units} not supported: no known conversion to Bq/ml")
    suv_scale = _philips_factor(ds, PHILIPS_SUV_SCALE_OFFSET)
    activity = _philips_factor(ds, PHILIPS_ACTIVITY_SCALE_OFFSET)
    if suv_scale is None:
        if activity is None:
            raise PetHeaderError(
                "units CNTS without Philips SUV (7053,1000) or activity concentration "
                "(7053,1009) scale factor: no known conversion to Bq/ml"
            )
        return activity
    from_suv = suv_scale / _bqml_suv_factor(ds)
    if activity is not None and abs(from_suv - activity) > _PHILIPS_AGREEMENT * activity:
        raise PetHeaderError(
            f"Philips scale factors disagree: SUV factor implies {from_suv:.6g} Bq/ml per "
            f"count, activity concentration factor says {activity:.6g}"
        )
    return from_suv


def suv_bw_factor(ds: Dataset) -> float:
    """Factor that turns this image's Bq/ml into SUVbw (g/ml), per QIBA/UPICT pseudo-code.

    SUVbw = C * weight_g / decayed_dose, with the injected dose decayed to the time the image
    values refer to: the scan start for DecayCorrection START (Series Date/Time, with the QIBA
    rule for rewritten series times), the injection itself for ADMIN (no decay), and this
    image's Acquisition Date/Time for NONE (values are activity at acquisition; the decay
    within the frame is neglected). For Units CNTS, C is the Bq/ml of ``activity_scale``.

    Raises:
        PetHeaderError: If the units have no known conversion to Bq/ml, the image is not
            attenuation (and, unless NONE, decay) corrected, or any needed attribute is
            missing, malformed or implausible (injection after the scan, or more than ten
            half-lives before it).
    """
    activity_scale(ds)
    return _bqml_suv_factor(ds)


def patient_weight_kg(ds: Dataset) -> float:
    """The patient weight SUVbw uses (kg).

    Raises:
        PetHeaderError: PatientWeight is absent, malformed or not positive.
    """
    if ds.get("PatientWeight") in (None, ""):
        raise PetHeaderError("PatientWeight is absent: SUVbw needs the body weight")
    weight_kg = _float(ds, "PatientWeight")
    if weight_kg <= 0.0:
        raise PetHeaderError(f"PatientWeight is {weight_kg:g} kg: SUVbw needs the body weight")
    return weight_kg


def _bqml_suv_factor(ds: Dataset) -> float:
    """``suv_bw_factor`` without the units check (Philips CNTS conversion needs it)."""
    corrections = corrected_image(ds)
    if CORRECTION_ATTENUATION not in corrections:
        raise PetHeaderError("CorrectedImage lacks ATTN: SUV of non-attenuation-corrected PET")
    correction = decay_correction(ds)
    if correction != DECAY_CORRECTION_NONE and CORRECTION_DECAY not in corrections:
        raise PetHeaderError(f"DecayCorrection {correction} but CorrectedImage lacks DECY")
    weight_kg = patient_weight_kg(ds)
    radiopharmaceutical = _radiopharmaceutical(ds)
    dose_bq = _float(radiopharmaceutical, "RadionuclideTotalDose")
    half_life_s = _float(radiopharmaceutical, "RadionuclideHalfLife")
    if dose_bq <= 0.0 or half_life_s <= 0.0:
        raise PetHeaderError(
            f"RadionuclideTotalDose and RadionuclideHalfLife must be positive: "
            f"{dose_bq} {half_life_s}"
        )
    if correction == DECAY_CORRECTION_ADMIN:
        decayed_dose_bq = dose_bq
    else:
        if correction == DECAY_CORRECTION_START:
            reference = _scan_datetime(ds, half_life_s)
        elif correction == DECAY_CORRECTION_NONE:
            reference = _datetime(ds, "AcquisitionDate", "AcquisitionTime")
        else:
            raise PetHeaderError(f"DecayCorrection {correction!r} is not START, ADMIN or NONE")
        decay_s = (
            reference - _injection_datetime(ds, radiopharmaceutical, reference)
        ).total_seconds()
        if decay_s < 0.0:
            raise PetHeaderError(
                f"injection is {-decay_s:.0f} s after the {correction} decay reference time "
                "(series start or acquisition): date-shifted archive or wrong clock?"
            )
        if decay_s > _MAX_UPTAKE_HALF_LIVES * half_life_s:
            raise PetHeaderError(
                f"injection is {decay_s / 3600:.1f} h before the decay reference time, more "
                f"than {_MAX_UPTAKE_HALF_LIVES:.0f} half-lives: date-shifted archive or "
                "wrong clock?"
            )
        decayed_dose_bq = dose_bq * 2.0 ** (-decay_s / half_life_s)
    return weight_kg * 1000.0 / decayed_dose_bq
