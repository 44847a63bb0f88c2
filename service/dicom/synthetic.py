"""Write a simulated PET study as DICOM: one study, one series per dose level.

The self-test and the demo need realistic input without patient data: the same phantom at
full dose and at each dose reduction factor (DRF), as PET Image Storage instances with the
headers a scanner writes (PS3.3 A.21 PET Image IOD: PET Series C.8.9.1, PET Isotope C.8.9.2,
PET Image C.8.9.4). The study object comes from ``model.simulate``; this module only relies on
its attributes (``SimulatedStudyLike``) because only ``service/pipeline/inference.py`` imports
the model (docs/architecture.md).

Dose reduction in the simulation thins counts of the same injection, so every series carries
the same injected dose and times; only the noise differs, and the SUV factor of every series
equals ``study.suv_per_bqml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import structlog
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian, PositronEmissionTomographyImageStorage
from pydicom.valuerep import DS

from service.dicom.uids import derived_uid
from service.dicom.writer import encode_slice, save_instance

__all__ = ["SIMULATION_MANUFACTURER", "SimulatedStudyLike", "format_drf", "write_simulated_study"]

log = structlog.stdlib.get_logger(__name__)

SIMULATION_MANUFACTURER = "UniPET simulation"
# Fixed scan start, so the same seed always gives the same files.
_SCAN_START = datetime(2024, 1, 15, 10, 0, 0)
_BED_DURATION_MS = 120_000
_FULL_DOSE_KEY = "full"
# PS3.3 C.8.9.4.1.2 Corrected Image: what a clinical reconstruction applies.
_CORRECTED_IMAGE = ["DECY", "ATTN", "SCAT", "DTIM", "RAN", "NORM"]
# Element names for nuclide symbols, used to find the SNOMED code in CID 4020.
_ELEMENT_NAMES = {
    "F": "Fluorine",
    "Ga": "Gallium",
    "C": "Carbon",
    "Cu": "Copper",
    "Zr": "Zirconium",
    "N": "Nitrogen",
    "O": "Oxygen",
    "Rb": "Rubidium",
    "I": "Iodine",
    "Y": "Yttrium",
}
# Positron branching fractions (NNDC/ENSDF), written to RadionuclidePositronFraction.
_POSITRON_FRACTION = {"18F": 0.9686, "68Ga": 0.8891, "11C": 0.9976, "64Cu": 0.1752, "89Zr": 0.2274}


class TracerLike(Protocol):
    """The tracer facts of ``model.simulate.types.TracerDose`` this module reads."""

    @property
    def tracer(self) -> str: ...
    @property
    def radiopharmaceutical(self) -> str: ...
    @property
    def radionuclide(self) -> str: ...
    @property
    def half_life_s(self) -> float: ...
    @property
    def injected_activity_bq(self) -> float: ...
    @property
    def uptake_time_s(self) -> float: ...
    @property
    def patient_weight_kg(self) -> float: ...
    @property
    def patient_height_m(self) -> float: ...
    @property
    def patient_sex(self) -> str: ...
    @property
    def patient_age_years(self) -> int: ...


class ScannerLike(Protocol):
    """The scanner facts of ``model.simulate.types.ScannerModel`` this module reads."""

    @property
    def name(self) -> str: ...


class SimulatedStudyLike(Protocol):
    """The attributes of ``model.simulate.types.SimulatedStudy`` this module reads."""

    @property
    def seed(self) -> int: ...
    @property
    def size(self) -> str: ...
    @property
    def spacing_mm(self) -> tuple[float, float, float]: ...
    @property
    def full_dose_bqml(self) -> npt.NDArray[np.float32]: ...
    @property
    def low_dose_bqml(self) -> Mapping[float, npt.NDArray[np.float32]]: ...
    @property
    def tracer(self) -> TracerLike: ...
    @property
    def scanner(self) -> ScannerLike: ...


def format_drf(drf: float) -> str:
    """DRF as written in folder names and descriptions: 20.0 -> "20", 7.5 -> "7.5"."""
    return f"{drf:f}".rstrip("0").rstrip(".")


def _radionuclide_code(radionuclide: str) -> Dataset:
    """RadionuclideCodeSequence item from CID 4020 (SNOMED CT), e.g. "18F" -> 77004003."""
    mass = "".join(ch for ch in radionuclide if ch.isdigit())
    symbol = "".join(ch for ch in radionuclide if ch.isalpha())
    name = _ELEMENT_NAMES.get(symbol)
    if not mass or name is None:
        raise ValueError(f"no CID 4020 code known for radionuclide {radionuclide!r}")
    code: Code = getattr(codes.SCT, f"_{mass}{name}")
    return _coded(code)


def _coded(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item


def _patient_orientation() -> dict[str, list[Dataset]]:
    """NM/PET Patient Orientation Module (PS3.3 C.8.4.6): supine, head first (CID 19-21)."""
    orientation = _coded(codes.SCT.Recumbent)
    orientation.PatientOrientationModifierCodeSequence = [_coded(codes.SCT.Supine)]
    return {
        "PatientOrientationCodeSequence": [orientation],
        "PatientGantryRelationshipCodeSequence": [_coded(codes.SCT.Headfirst)],
    }


def _radiopharmaceutical_item(tracer: TracerLike, injection: datetime) -> Dataset:
    """PET Isotope Module item (PS3.3 C.8.9.2)."""
    item = Dataset()
    item.Radiopharmaceutical = tracer.radiopharmaceutical
    item.RadionuclideCodeSequence = [_radionuclide_code(tracer.radionuclide)]
    item.RadiopharmaceuticalRoute = "Intravenous route"
    item.RadiopharmaceuticalStartTime = injection.strftime("%H%M%S.%f")
    item.RadiopharmaceuticalStartDateTime = injection.strftime("%Y%m%d%H%M%S.%f")
    item.RadionuclideTotalDose = DS(tracer.injected_activity_bq, auto_format=True)
    item.RadionuclideHalfLife = DS(tracer.half_life_s, auto_format=True)
    fraction = _POSITRON_FRACTION.get(tracer.radionuclide)
    if fraction is not None:
        item.RadionuclidePositronFraction = DS(fraction, auto_format=True)
    return item


def _identity(study: SimulatedStudyLike) -> str:
    """What makes a simulated study unique: the same seed at another size or tracer is
    another acquisition with other geometry, so it must never share UIDs."""
    return f"seed={study.seed};size={study.size};tracer={study.tracer.tracer}"


def _study_dataset(study: SimulatedStudyLike) -> Dataset:
    """Patient, General Study, Patient Study, Frame of Reference and Equipment: shared."""
    seed, tracer = study.seed, study.tracer
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    # Patient
    ds.PatientName = f"SIMULATED^PHANTOM{seed}"
    ds.PatientID = f"SIM{seed:08d}"
    ds.PatientBirthDate = ""
    ds.PatientSex = tracer.patient_sex
    # General Study
    ds.StudyInstanceUID = derived_uid("unipet-simulation", _identity(study), "study")
    ds.StudyDate = _SCAN_START.strftime("%Y%m%d")
    ds.StudyTime = _SCAN_START.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    ds.StudyID = f"SIM{seed}"[:16]
    ds.AccessionNumber = f"SIMACC{seed}"[:16]
    ds.StudyDescription = "PET WB simulated"
    # Patient Study
    ds.PatientAge = f"{min(tracer.patient_age_years, 999):03d}Y"
    ds.PatientSize = DS(tracer.patient_height_m, auto_format=True)
    ds.PatientWeight = DS(tracer.patient_weight_kg, auto_format=True)
    # Frame of Reference
    ds.FrameOfReferenceUID = derived_uid(
        "unipet-simulation", _identity(study), "frame-of-reference"
    )
    ds.PositionReferenceIndicator = ""
    # General Equipment
    ds.Manufacturer = SIMULATION_MANUFACTURER
    ds.ManufacturerModelName = study.scanner.name
    return ds


def _series_dataset(
    study: SimulatedStudyLike, key: str, drf: float | None, number: int, slices: int
) -> Dataset:
    """General Series, PET Series and PET Isotope attributes of one dose level."""
    tracer = study.tracer
    injection = _SCAN_START - timedelta(seconds=tracer.uptake_time_s)
    ds = _study_dataset(study)
    # General Series
    ds.Modality = "PT"
    ds.SeriesInstanceUID = derived_uid("unipet-simulation", _identity(study), "series", key)
    ds.SeriesNumber = number
    dose = "full dose" if drf is None else f"1/{format_drf(drf)} dose"
    ds.SeriesDescription = f"PET WB simulated {dose}"
    ds.SeriesDate = _SCAN_START.strftime("%Y%m%d")
    ds.SeriesTime = _SCAN_START.strftime("%H%M%S")
    ds.BodyPartExamined = "WHOLEBODY"  # PS3.16 Annex L; unpaired, so no Laterality
    # PET Series
    ds.Units = "BQML"
    ds.CountsSource = "EMISSION"
    ds.SeriesType = ["WHOLE BODY", "IMAGE"]
    ds.NumberOfSlices = slices
    ds.CorrectedImage = _CORRECTED_IMAGE
    ds.DecayCorrection = "START"
    ds.RandomsCorrectionMethod = "DLYD"
    ds.AttenuationCorrectionMethod = "simulated attenuation map"
    ds.ReconstructionMethod = "OSEM"
    ds.CollimatorType = "NONE"
    # PET Isotope
    ds.RadiopharmaceuticalInformationSequence = [_radiopharmaceutical_item(tracer, injection)]
    # NM/PET Patient Orientation
    for keyword, value in _patient_orientation().items():
        setattr(ds, keyword, value)
    return ds


def _frame_timing(half_life_s: float) -> tuple[float, float]:
    """(FrameReferenceTime ms, DecayFactor) for one bed of _BED_DURATION_MS from scan start.

    FrameReferenceTime is the time of average count rate within the frame (PS3.3
    C.8.9.4.1.5); DecayFactor is the correction from that time back to the scan start.
    """
    decay_constant = np.log(2.0) / half_life_s
    decay_in_frame = decay_constant * _BED_DURATION_MS / 1000.0
    average_s = np.log(decay_in_frame / (1.0 - np.exp(-decay_in_frame))) / decay_constant
    return float(average_s * 1000.0), float(np.exp(decay_constant * average_s))


def _write_series(
    study: SimulatedStudyLike,
    volume: npt.NDArray[np.float32],
    key: str,
    drf: float | None,
    number: int,
    directory: Path,
) -> list[Path]:
    nz, ny, nx = volume.shape
    dz, dy, dx = study.spacing_mm
    series = _series_dataset(study, key, drf, number, nz)
    reference_ms, decay_factor = _frame_timing(study.tracer.half_life_s)
    directory.mkdir(parents=True)
    paths = []
    for k in range(nz):
        ds = Dataset()
        ds.update(series)
        instance_number = nz - k  # head first, like a whole-body scan from head to feet
        ds.SOPClassUID = PositronEmissionTomographyImageStorage
        ds.SOPInstanceUID = derived_uid("unipet-simulation", _identity(study), key, str(k))
        # General Image and PET Image
        ds.InstanceNumber = instance_number
        ds.ImageIndex = instance_number
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.ContentDate = ds.AcquisitionDate = _SCAN_START.strftime("%Y%m%d")
        ds.ContentTime = ds.AcquisitionTime = _SCAN_START.strftime("%H%M%S")
        ds.FrameReferenceTime = DS(reference_ms, auto_format=True)
        ds.ActualFrameDuration = _BED_DURATION_MS
        ds.DecayFactor = DS(decay_factor, auto_format=True)
        # Image Plane: rows run +Y (posterior), columns +X (left), slices +Z (head).
        z_mm = (k - (nz - 1) / 2.0) * dz
        ds.ImagePositionPatient = [
            DS(-(nx - 1) / 2.0 * dx, auto_format=True),
            DS(-(ny - 1) / 2.0 * dy, auto_format=True),
            DS(z_mm, auto_format=True),
        ]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [DS(dy, auto_format=True), DS(dx, auto_format=True)]
        ds.SliceThickness = DS(dz, auto_format=True)
        ds.SliceLocation = DS(z_mm, auto_format=True)
        encode_slice(ds, volume[k])
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = directory / f"{instance_number:04d}.dcm"
        save_instance(ds, path)
        paths.append(path)
    return sorted(paths)


def write_simulated_study(study: SimulatedStudyLike, out_dir: Path) -> dict[str, list[Path]]:
    """Write ``out_dir/full/*.dcm`` and ``out_dir/drf<k>/*.dcm``, one study, one series each.

    Args:
        study: A simulated study (``model.simulate.SimulatedStudy`` or anything alike).
        out_dir: Parent folder; created if missing. Series folders must not exist yet, so a
            second run never mixes its files with an earlier one.

    Returns:
        Series folder name ("full", "drf20", "drf7.5") to its files, sorted by name.

    Raises:
        FileExistsError: If a series folder already exists.
        ValueError: If the radionuclide has no known SNOMED code.
    """
    levels: list[tuple[str, float | None, npt.NDArray[np.float32]]] = [
        (_FULL_DOSE_KEY, None, study.full_dose_bqml)
    ]
    for factor in sorted(study.low_dose_bqml):
        levels.append((f"drf{format_drf(factor)}", factor, study.low_dose_bqml[factor]))
    for key, _, _ in levels:
        if (out_dir / key).exists():
            raise FileExistsError(f"series folder already exists: {out_dir / key}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {}
    for number, (key, drf, volume) in enumerate(levels, start=1):
        written[key] = _write_series(study, volume, key, drf, number, out_dir / key)
    log.info("simulated_study_written", series=len(written), seed=study.seed)
    return written
