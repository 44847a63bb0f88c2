"""Who and where the quality-report instances are: UIDs, series numbers, equipment.

The SR and the PDF belong to the derived series they describe: same patient and study (copied
from its header), UIDs derived from its Series Instance UID (itself derived from the input
series, the weights hash and the parameters; ``service.dicom.writer``), so re-sending a series
re-sends reports with the same UIDs and a PACS replaces rather than duplicates them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime

from pydicom.dataset import Dataset
from pydicom.uid import UID

from service.dicom.provenance import AlgorithmIdentity
from service.dicom.uids import derived_uid

__all__ = ["ReportTarget", "ReportTimes", "copy_patient_study"]

#: Patient (C.7.1.1), General Study (C.7.2.1) and Patient Study (C.7.2.2) attributes copied
#: from the derived images, so the reports file under the same patient and study.
PATIENT_STUDY_KEYWORDS = (
    "SpecificCharacterSet",
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "OtherPatientIDsSequence",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
)


def copy_patient_study(source: Dataset, target: Dataset) -> None:
    """Copy the patient and study attributes present in ``source`` into ``target``."""
    for keyword in PATIENT_STUDY_KEYWORDS:
        if keyword in source:
            target[keyword] = copy.deepcopy(source[keyword])


@dataclass(frozen=True)
class ReportTimes:
    """When the series went through the node (epoch seconds; None when not known yet)."""

    received_at: float | None
    completed_at: float | None
    inference_s: float | None
    written_at: float | None


@dataclass(frozen=True)
class ReportTarget:
    """The derived series a report describes and the identity of the report instances."""

    derived_headers: tuple[Dataset, ...]
    received_headers: tuple[Dataset, ...]
    algorithm: AlgorithmIdentity
    now: datetime

    @property
    def first(self) -> Dataset:
        """A derived header: patient, study, Frame of Reference and equipment come from it."""
        return self.derived_headers[0]

    @property
    def derived_series_uid(self) -> str:
        """Series Instance UID of the derived images."""
        return str(self.first.SeriesInstanceUID)

    @property
    def frame_of_reference_uid(self) -> str:
        """Frame of Reference UID shared by the received and derived images."""
        return str(self.first.FrameOfReferenceUID)

    def uid(self, what: str) -> UID:
        """Deterministic UID of one report object ("sr-series", "sr", "pdf-series", "pdf")."""
        return derived_uid("unipet-quality-report", what, self.derived_series_uid)

    def series_number(self, offset: int) -> int:
        """Derived series number + ``offset`` (1 for the SR, 2 for the PDF)."""
        number = self.first.get("SeriesNumber")
        base = int(number) if number not in (None, "") else 0
        return base + offset if base + offset < 2**31 else offset

    def contributing_equipment(self) -> list[Dataset]:
        """The derived images' Contributing Equipment (scanner, then algorithm; C.12.1)."""
        return [copy.deepcopy(item) for item in self.first.get("ContributingEquipmentSequence", [])]
