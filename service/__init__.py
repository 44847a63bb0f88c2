"""The UniPET DICOM node; module map in docs/architecture.md."""

from service.logs import route_to_stdlib

route_to_stdlib()
