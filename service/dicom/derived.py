"""The DICOM header of one derived PET instance, built from its source instance.

Split from ``service/writer.py`` (which owns pixels, UIDs and files) so each reads against
the standard on its own: this module fills, for one slice, the attributes PS3.3 asks of a
derived image (C.12.4 General Reference, C.12.2 Common Instance Reference, C.12.1 SOP Common
Contributing Equipment, C.7.5.1 General Equipment) and keeps everything SUV depends on (C.8.9.1
PET Series, C.8.9.2 PET Isotope, C.8.9.4 PET Image, C.7.2.2 Patient Study).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from highdicom.sr import CodedConcept
from pydicom import config
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import UID, ExplicitVRLittleEndian

from service.dicom.provenance import PROJECT_MANUFACTURER, AlgorithmIdentity, node_version

__all__ = [
    "ACQUISITION_EQUIPMENT",
    "IMAGE_TYPE_DERIVED",
    "NODE_MODEL_NAME",
    "OUTPUT_TRANSFER_SYNTAX",
    "PROCESSING_ALGORITHM",
    "SOURCE_IMAGE_PURPOSE",
    "DerivationContext",
    "derivation_description",
    "derived_header",
]

# IHE Radiology AI Results (AIR) profile: purpose of the Contributing Equipment item that
# names the algorithm.
PROCESSING_ALGORITHM = Code("Newcode1", "99IHE", "Processing Algorithm")
# CID 7202 Source Image Purposes of Reference.
SOURCE_IMAGE_PURPOSE: Code = codes.DCM.SourceImageForImageProcessingOperation  # 121322
# CID 7005 Contributing Equipment Purposes of Reference: the scanner that acquired the source.
ACQUISITION_EQUIPMENT: Code = codes.DCM.AcquisitionEquipment  # 109101
NODE_MODEL_NAME = "UniPET DICOM node"
# PS3.3 C.8.9.4.1.1: in the PET Image Module, Image Type value 1 is ORIGINAL or DERIVED and
# value 2 shall be PRIMARY; SECONDARY is not allowed for PET Image Storage. Derivation is
# told by value 1, the Derivation Code and the Contributing Equipment.
IMAGE_TYPE_DERIVED = ("DERIVED", "PRIMARY")
_LO_MAX = 64
_ST_MAX = 1024

# Attributes of the source that describe its stored pixels, its own creation or its signature:
# false for the derived instance, so they are not copied.
_NOT_COPIED = frozenset(
    {
        "PixelData",
        "FloatPixelData",
        "DoubleFloatPixelData",
        "PixelDataProviderURL",
        "IconImageSequence",
        "SmallestImagePixelValue",
        "LargestImagePixelValue",
        "SmallestPixelValueInSeries",
        "LargestPixelValueInSeries",
        "PixelPaddingValue",
        "PixelPaddingRangeLimit",
        "RealWorldValueMappingSequence",
        "DigitalSignaturesSequence",
        "MACParametersSequence",
        "EncryptedAttributesSequence",
        "OriginalAttributesSequence",
        "InstanceCreatorUID",
        "SourceImageSequence",
        "SourceInstanceSequence",
        "DerivationCodeSequence",
        "DerivationDescription",
        "ReferencedSeriesSequence",
        "ContributingEquipmentSequence",
        "LossyImageCompression",
        "LossyImageCompressionRatio",
        "LossyImageCompressionMethod",
    }
)
# PS3.3 C.7.6.1.1.5: Lossy Image Compression Method defined terms, by lossy transfer syntax.
_LOSSY_METHODS = {
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.91": "ISO_15444_1",  # JPEG 2000
    "1.2.840.10008.1.2.4.203": "ISO_15444_15",  # HTJ2K
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",  # JPEG extended
}
LOSSY_COMPRESSION = "01"
# General Equipment (PS3.3 C.7.5.1) of the source: the scanner. Moved into an Acquisition
# Equipment item of Contributing Equipment; the derived instance's own equipment is the node.
_GENERAL_EQUIPMENT = (
    "Manufacturer",
    "InstitutionName",
    "InstitutionAddress",
    "StationName",
    "InstitutionalDepartmentName",
    "ManufacturerModelName",
    "DeviceSerialNumber",
    "SoftwareVersions",
    "DeviceUID",
)
_EQUIPMENT_NOT_COPIED = frozenset(
    {*_GENERAL_EQUIPMENT, "GantryID", "UDISequence", "ManufacturerDeviceClassUID"}
)
_NOT_COPIED_ANYWHERE = _NOT_COPIED | _EQUIPMENT_NOT_COPIED
#: Transfer syntax of the derived files, and its (implicit VR, little endian) encoding.
OUTPUT_TRANSFER_SYNTAX = ExplicitVRLittleEndian
_OUTPUT_ENCODING = (OUTPUT_TRANSFER_SYNTAX.is_implicit_VR, OUTPUT_TRANSFER_SYNTAX.is_little_endian)


@dataclass(frozen=True)
class DerivationContext:
    """Facts shared by every instance of one derived series."""

    algorithm: AlgorithmIdentity
    series_instance_uid: UID
    series_number: int
    series_description: str
    derivation_code: Code
    derivation_description: str
    source_series: Sequence[Dataset]
    now: datetime


def derivation_description(
    algorithm: AlgorithmIdentity,
    drf_estimate: float | None,
    clipped_voxels: int,
    range_note: str = "",
) -> str:
    """DerivationDescription (0008,2111) in plain words: what was done, by what, to what.

    ``range_note`` (``RangeCheck.note``: "outside the trained range: ...") follows the facts
    when the input lies outside what the network was trained on. The text stays within ST's
    1024 characters (PS3.5 Table 6.2-1) by shortening the part before the range note, so the
    note and the closing statement are never the part cut off.
    """
    drf = (
        f"estimated dose reduction factor {drf_estimate:.3g}"
        if drf_estimate is not None
        else "dose reduction factor not estimated"
    )
    head = (
        f"Denoised by {algorithm.name} {algorithm.version} ({algorithm.description}); "
        f"weights sha256:{algorithm.weights_sha256}; {drf}; "
        f"{clipped_voxels} negative voxels set to 0 Bq/ml"
    )
    tail = (f"; {range_note}" if range_note else "") + ". Not the acquired image."
    tail = tail[-_ST_MAX:]
    return head[: _ST_MAX - len(tail)] + tail


def _software_versions(algorithm: AlgorithmIdentity) -> list[str]:
    """SoftwareVersions values, each within the LO limit of 64 characters.

    "<version> sha256:<64 hex>" is 77 characters, too long for one LO value, so it is then
    written as two values: the version and the bare hash.
    """
    combined = algorithm.software_versions
    if len(combined) <= _LO_MAX:
        return [combined]
    return [algorithm.version[:_LO_MAX], algorithm.weights_sha256]


def _processing_item(context: DerivationContext) -> Dataset:
    """Contributing Equipment item naming the algorithm (IHE AIR style, PS3.3 C.12.1)."""
    algorithm = context.algorithm
    item = Dataset()
    item.PurposeOfReferenceCodeSequence = [CodedConcept.from_code(PROCESSING_ALGORITHM)]
    item.Manufacturer = algorithm.manufacturer[:_LO_MAX]
    item.ManufacturerModelName = algorithm.name[:_LO_MAX]
    item.SoftwareVersions = _software_versions(algorithm)
    item.DeviceUID = algorithm.device_uid
    item.ContributionDateTime = context.now.strftime("%Y%m%d%H%M%S")
    item.ContributionDescription = (
        f"Denoising by {algorithm.name} {algorithm.software_versions}: {algorithm.description}"
    )[:_ST_MAX]
    return item


def _acquisition_item(source: Dataset) -> Dataset | None:
    """Contributing Equipment item keeping the scanner named in the source, if any."""
    if not str(source.get("Manufacturer", "") or "").strip():
        return None
    item = Dataset()
    item.PurposeOfReferenceCodeSequence = [CodedConcept.from_code(ACQUISITION_EQUIPMENT)]
    for keyword in _GENERAL_EQUIPMENT:
        if keyword in source and source[keyword].value not in (None, ""):
            item[keyword] = copy.deepcopy(source[keyword])
    return item


def _source_reference(source: Dataset) -> Dataset:
    """SourceImageSequence item (PS3.3 C.12.4) with the CID 7202 purpose."""
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    item.PurposeOfReferenceCodeSequence = [CodedConcept.from_code(SOURCE_IMAGE_PURPOSE)]
    item.SpatialLocationsPreserved = "YES"
    return item


def _referenced_series(source: Dataset) -> list[Dataset]:
    """Common Instance Reference (PS3.3 C.12.2): the source slice plus the source's own refs."""
    instance = Dataset()
    instance.ReferencedSOPClassUID = source.SOPClassUID
    instance.ReferencedSOPInstanceUID = source.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = source.SeriesInstanceUID
    series.ReferencedInstanceSequence = [instance]
    kept = [copy.deepcopy(item) for item in source.get("ReferencedSeriesSequence") or []]
    return [series, *kept]


def _copy_source(source: Dataset) -> Dataset:
    """Public, non-pixel attributes of the source; private tags dropped (not ours to vouch).

    A source read as Explicit VR Little Endian (every transfer syntax but Implicit VR and
    Big Endian) hands its still-undecoded elements over as they are, and the copy is marked
    with the source's encoding, so ``dcmwrite`` writes their bytes unchanged instead of
    decoding and re-encoding some fifty elements and their sequences per slice. Elements
    stored as UN are decoded, so that the output names their dictionary VR.
    """
    ds = Dataset()
    raw_ok = source.original_encoding == _OUTPUT_ENCODING
    for tag in source.keys():  # noqa: SIM118 (iterating a Dataset decodes every element)
        if tag.is_private or keyword_for_tag(tag) in _NOT_COPIED_ANYWHERE:
            continue
        element = source.get_item(tag)
        if raw_ok and element.is_raw and element.VR not in (None, "UN"):
            ds[tag] = element  # an immutable tuple of bytes: safe to share
            continue
        element = source[tag]
        if element.VR == "SQ":
            ds.add(copy.deepcopy(element))
        else:  # a new element with a copy of its value: as safe as a deep copy, far cheaper
            value = copy.copy(element.value)
            ds.add(DataElement(element.tag, element.VR, value, validation_mode=config.IGNORE))
    if raw_ok:
        ds.set_original_encoding(*_OUTPUT_ENCODING, source.original_character_set)
    return ds


def _as_list(value: object) -> list[str]:
    if value is None or value == "":
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def _lossy_history(source: Dataset) -> tuple[list[str], list[str]] | None:
    """(ratios, methods) if the source or the way it reached us was lossy, else None.

    PS3.3 C.7.6.1.1.5: once an image has been lossy compressed, every derived image must
    say so, with each step's ratio and method in order. A lossy transfer syntax of the file
    we received is one more step unless the encoder already recorded it; its ratio is the
    decoded size over the encapsulated size.
    """
    ratios = _as_list(source.get("LossyImageCompressionRatio"))
    methods = _as_list(source.get("LossyImageCompressionMethod"))
    lossy = str(source.get("LossyImageCompression", "")).strip() == LOSSY_COMPRESSION
    meta = getattr(source, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    # An encoder that records its own step (dcmtk does) has already named this method last.
    recorded = bool(methods) and methods[-1] == _LOSSY_METHODS.get(syntax)
    if syntax in _LOSSY_METHODS and "PixelData" in source and not recorded:
        decoded = int(source.Rows) * int(source.Columns) * int(source.BitsAllocated) // 8
        ratio = decoded / max(1, len(source.PixelData))
        ratios.append(f"{ratio:.2f}"[:16])
        methods.append(_LOSSY_METHODS[syntax])
        lossy = True
    return (ratios, methods) if lossy else None


def derived_header(source: Dataset, sop_instance_uid: UID, context: DerivationContext) -> Dataset:
    """Header of the derived instance for one source slice; pixels are set by the writer.

    Patient, study, Frame of Reference, series and acquisition dates and times, and all PET
    quantitation attributes are copied unchanged: SUV decay refers to Series and Acquisition
    Date/Time (QIBA), so changing them would change SUV.
    """
    ds = _copy_source(source)
    date, time = context.now.strftime("%Y%m%d"), context.now.strftime("%H%M%S")
    # SOP Common
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    contributing = [
        copy.deepcopy(item) for item in source.get("ContributingEquipmentSequence") or []
    ]
    acquisition = _acquisition_item(source)
    if acquisition is not None:
        contributing.append(acquisition)
    contributing.append(_processing_item(context))
    ds.ContributingEquipmentSequence = contributing
    # General Series
    ds.SeriesInstanceUID = context.series_instance_uid
    ds.SeriesNumber = context.series_number
    ds.SeriesDescription = context.series_description
    # General Equipment: the node made this instance
    ds.Manufacturer = PROJECT_MANUFACTURER
    ds.ManufacturerModelName = NODE_MODEL_NAME
    ds.SoftwareVersions = node_version()
    # General Image / PET Image
    ds.ImageType = [*IMAGE_TYPE_DERIVED, *list(source.get("ImageType") or [])[2:]]
    ds.ContentDate, ds.ContentTime = date, time
    # Lossy compression history (PS3.3 C.7.6.1.1.5); our own output is written losslessly.
    lossy = _lossy_history(source)
    if lossy is not None:
        ds.LossyImageCompression = LOSSY_COMPRESSION
        if lossy[0]:
            ds.LossyImageCompressionRatio = lossy[0]
        if lossy[1]:
            ds.LossyImageCompressionMethod = lossy[1]
    # PET Series: the writer stores Bq/ml (Philips CNTS was converted on loading).
    ds.Units = "BQML"
    # General Reference
    ds.DerivationDescription = context.derivation_description
    ds.DerivationCodeSequence = [CodedConcept.from_code(context.derivation_code)]
    ds.SourceImageSequence = [_source_reference(source)]
    # Common Instance Reference
    ds.ReferencedSeriesSequence = _referenced_series(source)
    return ds
