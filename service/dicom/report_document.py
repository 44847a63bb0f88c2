"""Wrap the quality-report PDF as an Encapsulated PDF Storage instance (PS3.3 A.45.1).

The installed highdicom has no encapsulated-document class, so the IOD is built with pydicom,
module by module: Patient, General Study, Patient Study (copied from the derived images),
Encapsulated Document Series, General Equipment, SC Equipment, Encapsulated Document and
SOP Common with the derived images' Contributing Equipment.
"""

from __future__ import annotations

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import EncapsulatedPDFStorage, ExplicitVRLittleEndian

from service.dicom.derived import NODE_MODEL_NAME
from service.dicom.provenance import PROJECT_MANUFACTURER, node_version
from service.dicom.report_identity import ReportTarget, copy_patient_study

__all__ = ["PDF_DOCUMENT_TITLE", "PDF_SERIES_DESCRIPTION", "build_encapsulated_pdf"]

PDF_DOCUMENT_TITLE = "UniPET quality report"
PDF_SERIES_DESCRIPTION = "UniPET quality report (PDF)"
# PS3.3 C.8.6.1: WSD = workstation (the document was made by software, not digitised).
_CONVERSION_TYPE_WORKSTATION = "WSD"


def _source_instances(target: ReportTarget) -> list[Dataset]:
    """Source Instance Sequence (C.24.2): the derived images the report describes."""
    items = []
    for header in target.derived_headers:
        item = Dataset()
        item.ReferencedSOPClassUID = header.SOPClassUID
        item.ReferencedSOPInstanceUID = header.SOPInstanceUID
        items.append(item)
    return items


def build_encapsulated_pdf(pdf: bytes, target: ReportTarget) -> Dataset:
    """The Encapsulated PDF instance holding ``pdf``, in the derived series' study.

    Raises:
        ValueError: ``pdf`` does not start like a PDF file.
    """
    if not pdf.startswith(b"%PDF-"):
        raise ValueError("not a PDF document")
    date, time = target.now.strftime("%Y%m%d"), target.now.strftime("%H%M%S")
    ds = Dataset()
    # Patient, General Study, Patient Study
    copy_patient_study(target.first, ds)
    ds.SpecificCharacterSet = ds.get("SpecificCharacterSet") or "ISO_IR 192"
    # Encapsulated Document Series
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = target.uid("pdf-series")
    ds.SeriesNumber = target.series_number(2)
    ds.SeriesDescription = PDF_SERIES_DESCRIPTION
    # General Equipment
    ds.Manufacturer = PROJECT_MANUFACTURER
    ds.ManufacturerModelName = NODE_MODEL_NAME
    ds.SoftwareVersions = node_version()
    # SC Equipment
    ds.ConversionType = _CONVERSION_TYPE_WORKSTATION
    # Encapsulated Document
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = date, time
    ds.AcquisitionDateTime = f"{date}{time}"
    ds.BurnedInAnnotation = "NO"  # the report shows UIDs and numbers, no patient identifiers
    ds.DocumentTitle = PDF_DOCUMENT_TITLE
    ds.ConceptNameCodeSequence = []
    ds.SourceInstanceSequence = _source_instances(target)
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\x00" if len(pdf) % 2 else b"")
    # SOP Common
    ds.SOPClassUID = EncapsulatedPDFStorage
    ds.SOPInstanceUID = target.uid("pdf")
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.ContributingEquipmentSequence = target.contributing_equipment()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds
