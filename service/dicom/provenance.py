"""Who made a derived series: the algorithm identity written into DICOM provenance.

The node's output must name the algorithm, its version and a hash of its weights (IHE AI
Results style Contributing Equipment, PS3.3 C.7.5.1.1.1). This is the one place that identity
lives; ``service/pipeline/inference.py`` fills it, ``service/dicom/derived.py`` and
``service/dicom/writer.py`` read it. The node's own version, written as the derived series'
Software Versions, is read here too.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from pydicom.uid import UID, generate_uid

PROJECT_MANUFACTURER = "UniPET DICOM node project"

#: Package whose installed version is the node's version.
DISTRIBUTION = "unipet-node"


@functools.cache
def node_version() -> str:
    """The installed version of the node, or "unknown" when run from an uninstalled tree.

    Read once per process: every derived instance names it, and the package metadata
    lookup costs more than writing the rest of the header.
    """
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class AlgorithmIdentity:
    """Name, version and content hash of the algorithm that made a derived series.

    ``weights_sha256`` is the sha256 of the weights file for a network, or of the canonical
    parameter string for a classical filter, so two different configurations never share a hash.
    """

    name: str
    version: str
    weights_sha256: str
    description: str
    parameters: Mapping[str, str] = field(default_factory=dict)
    manufacturer: str = PROJECT_MANUFACTURER

    def __post_init__(self) -> None:
        if len(self.weights_sha256) != 64 or any(
            c not in "0123456789abcdef" for c in self.weights_sha256
        ):
            raise ValueError(
                f"weights_sha256 must be 64 lower-case hex digits: {self.weights_sha256!r}"
            )
        if not self.name or not self.version:
            raise ValueError(
                f"algorithm name and version are required: {self.name!r} {self.version!r}"
            )

    @property
    def software_versions(self) -> str:
        """Value for SoftwareVersions (0018,1020): version plus weights hash."""
        return f"{self.version} sha256:{self.weights_sha256}"

    @property
    def device_uid(self) -> UID:
        """DeviceUID (0018,1002) derived from the weights hash: same weights, same device."""
        return generate_uid(prefix="2.25.", entropy_srcs=["unipet-device", self.weights_sha256])
