"""The quality report as a Comprehensive 3D SR measurement report (TID 1500).

PACS and viewers that read SR can show and mine these numbers next to the images: every
value of ``service.dicom.quality`` is a coded measurement (TID 300) in SUVbw, unit
``{SUVbw}g/ml`` (UCUM, CID 85), inside a measurement group (TID 1501) per region and per
series, so the received ("before") and derived ("after") values of one focus are two groups
with the same region. Each region is a sphere given as a 3D ellipsoid (SCOORD3D, PS3.3
C.18.9) in the shared Frame of Reference; each group's Source of Measurement is the slice
through the sphere's centre.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from highdicom.sr import (
    AlgorithmIdentification,
    Comprehensive3DSR,
    CoordinatesForMeasurement3D,
    DeviceObserverIdentifyingAttributes,
    FindingSite,
    GraphicTypeValues3D,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    SourceImageForMeasurementGroup,
    TrackingIdentifier,
)
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from service.dicom.derived import NODE_MODEL_NAME
from service.dicom.provenance import PROJECT_MANUFACTURER
from service.dicom.quality import QualityReport, ReferenceMethod, Sphere
from service.dicom.report_identity import ReportTarget
from service.dicom.uids import derived_uid

__all__ = ["SR_SERIES_DESCRIPTION", "SUVBW", "SUVBW_UNIT", "build_quality_sr"]

#: CID 7180 quantity "SUVbw" (DCM 126401) and its UCUM unit (CID 85).
SUVBW = Code("126401", "DCM", "SUVbw")
SUVBW_UNIT = Code("{SUVbw}g/ml", "UCUM", "Standardized Uptake Value body weight")
SR_SERIES_DESCRIPTION = "UniPET quality report (SR)"
_BEFORE, _AFTER = "received", "derived"


def _ellipsoid(sphere: Sphere) -> npt.NDArray[np.float64]:
    """Six points: the ends of three orthogonal diameters (PS3.3 C.18.9.1.2 ELLIPSOID)."""
    centre = np.asarray(sphere.centre_mm, dtype=np.float64)
    r = sphere.radius_mm
    axes = np.eye(3) * r
    points = [centre - axes[0], centre + axes[0], centre - axes[1]]
    points += [centre + axes[1], centre - axes[2], centre + axes[2]]
    return np.asarray(points, dtype=np.float64)


def _measurement(
    derivation: Code, value: float, sphere: Sphere, target: ReportTarget
) -> Measurement:
    return Measurement(
        name=SUVBW,
        value=float(value),
        unit=SUVBW_UNIT,
        derivation=derivation,
        algorithm_id=_algorithm(target),
        referenced_coordinates=[
            CoordinatesForMeasurement3D(
                graphic_type=GraphicTypeValues3D.ELLIPSOID,
                graphic_data=_ellipsoid(sphere),
                frame_of_reference_uid=target.frame_of_reference_uid,
            )
        ],
    )


def _algorithm(target: ReportTarget) -> AlgorithmIdentification:
    algorithm = target.algorithm
    return AlgorithmIdentification(
        name=algorithm.name[:64],
        version=algorithm.version[:64],
        parameters=[f"weights sha256:{algorithm.weights_sha256}"],
        manufacturer=algorithm.manufacturer[:64],
    )


def _group(
    label: str,
    which: str,
    sphere: Sphere,
    values: list[tuple[Code, float]],
    target: ReportTarget,
    finding_sites: list[FindingSite] | None = None,
) -> MeasurementsAndQualitativeEvaluations:
    headers = target.received_headers if which == _BEFORE else target.derived_headers
    source = headers[sphere.index[0]]
    identifier = f"{label}, {which} series"
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(
            uid=derived_uid(
                "unipet-quality-report", "tracking", target.derived_series_uid, identifier
            ),
            identifier=identifier,
        ),
        algorithm_id=_algorithm(target),
        finding_sites=finding_sites,
        measurements=[_measurement(d, v, sphere, target) for d, v in values],
        source_images=[
            SourceImageForMeasurementGroup(
                referenced_sop_class_uid=str(source.SOPClassUID),
                referenced_sop_instance_uid=str(source.SOPInstanceUID),
            )
        ],
    )


def _groups(
    report: QualityReport, target: ReportTarget
) -> list[MeasurementsAndQualitativeEvaluations]:
    reference = report.reference
    liver = reference.method is ReferenceMethod.LIVER
    label = "Reference region (liver)" if liver else "Reference region (most homogeneous)"
    sites = [FindingSite(codes.SCT.Liver)] if liver else None
    groups = []
    for which, mean, sd in (
        (_BEFORE, reference.mean_before, reference.sd_before),
        (_AFTER, reference.mean_after, reference.sd_after),
    ):
        values = [(codes.SCT.Mean, mean), (codes.SCT.StandardDeviation, sd)]
        groups.append(_group(label, which, reference.sphere, values, target, sites))
    for focus in report.foci:
        for which, suvmax, suvpeak in (
            (_BEFORE, focus.suvmax_before, focus.suvpeak_before),
            (_AFTER, focus.suvmax_after, focus.suvpeak_after),
        ):
            values = [(codes.SCT.Maximum, suvmax), (codes.DCM.PeakValueWithinROI, suvpeak)]
            groups.append(_group(f"Focus {focus.rank}", which, focus.sphere, values, target))
    return groups


def build_quality_sr(report: QualityReport, target: ReportTarget) -> Dataset:
    """The Comprehensive 3D SR instance of one derived series' quality report.

    Evidence (PS3.3 C.17.2.3) lists the received and derived images the groups reference.
    Patient and study come from the derived images via highdicom; Contributing Equipment is
    the derived images' own (scanner, then algorithm).
    """
    device = ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=target.algorithm.device_uid,
            name=NODE_MODEL_NAME,
            manufacturer_name=PROJECT_MANUFACTURER,
            model_name=target.algorithm.name[:64],
        ),
    )
    content = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=device),
        procedure_reported=codes.LN.PETWholeBody,
        imaging_measurements=_groups(report, target),
    )
    sr = Comprehensive3DSR(
        evidence=[*target.derived_headers, *target.received_headers],
        content=content[0],
        series_instance_uid=target.uid("sr-series"),
        series_number=target.series_number(1),
        sop_instance_uid=target.uid("sr"),
        instance_number=1,
        manufacturer=PROJECT_MANUFACTURER,
        is_complete=True,
        series_description=SR_SERIES_DESCRIPTION,
    )
    # SOP Common: the same Contributing Equipment as the images it measures (C.12.1)
    dataset: Dataset = sr
    dataset.ContributingEquipmentSequence = target.contributing_equipment()
    dataset.ManufacturerModelName = NODE_MODEL_NAME
    date, time = target.now.strftime("%Y%m%d"), target.now.strftime("%H%M%S")
    dataset.InstanceCreationDate, dataset.InstanceCreationTime = date, time
    dataset.ContentDate, dataset.ContentTime = date, time
    return dataset
