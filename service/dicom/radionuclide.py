"""Which radionuclide and tracer a PET header names, so only positron-emitter PET is denoised.

Vendors store SPECT and therapy imaging (Lu-177, Tc-99m, I-131) with the PET Image Storage
SOP class and Modality PT; a network trained on F-18 PET must never touch it. The nuclide is
read from Radionuclide Code Sequence (0054,0300), codes from PS3.16 CID 4020 "PET
Radionuclide" (SNOMED CT, a few DCM) and CID 18 "Isotopes in Radiopharmaceuticals", with
Radionuclide Half Life (0018,1075) as a cross-check, or alone when the code is absent. The
tracer is read from Radiopharmaceutical Code Sequence (0054,0304, CID 4021) or, failing
that, the free text Radiopharmaceutical (0018,0031).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.dataset import Dataset

__all__ = ["TRACER_FDG", "Nuclide", "identify_nuclide", "identify_tracer"]

# Half-life agreement between the code and (0018,1075); vendors round (6586.2 vs 6588 s).
_HALF_LIFE_TOLERANCE = 0.02


@dataclass(frozen=True)
class Nuclide:
    """A radionuclide as the node knows it."""

    name: str
    half_life_s: float
    positron_emitter: bool


# Positron emitters of CID 4020 that PET tracers use (half-lives from NNDC/ENSDF), keyed by
# (coding scheme, code value). Y-90 is in CID 4020 for bremsstrahlung/positron imaging after
# radioembolisation, but it is a beta-minus therapy nuclide (positron branch 3e-5): not ours.
_BY_CODE: dict[tuple[str, str], Nuclide] = {
    ("SCT", "77004003"): Nuclide("F-18", 6586.2, True),
    ("SCT", "35337001"): Nuclide("Ga-68", 4062.6, True),
    ("SCT", "40565003"): Nuclide("C-11", 1221.8, True),
    ("SCT", "21576001"): Nuclide("N-13", 597.9, True),
    ("SCT", "129504001"): Nuclide("O-15", 122.24, True),
    ("SCT", "3932008"): Nuclide("Cu-64", 45721.0, True),
    ("SCT", "422934004"): Nuclide("Cu-62", 580.2, True),
    ("SCT", "71425003"): Nuclide("Cu-61", 12000.0, True),
    ("SCT", "63360001"): Nuclide("Zr-89", 282240.0, True),
    ("SCT", "79197006"): Nuclide("Rb-82", 76.38, True),
    ("SCT", "40937006"): Nuclide("I-124", 360806.0, True),
    ("SCT", "10738001"): Nuclide("Y-86", 53064.0, True),
    ("SCT", "79523006"): Nuclide("Br-76", 58320.0, True),
    ("DCM", "126600"): Nuclide("Sc-44", 14292.0, True),
    ("DCM", "126605"): Nuclide("Sc-43", 14007.0, True),
    # CID 18: single-photon and therapy nuclides, named so the reason is readable.
    ("SCT", "14691008"): Nuclide("Y-90", 230400.0, False),
    ("SCT", "447553000"): Nuclide("Lu-177", 574300.0, False),
    ("SCT", "72454006"): Nuclide("Tc-99m", 21624.0, False),
    ("SCT", "1368003"): Nuclide("I-131", 692900.0, False),
    ("SCT", "21572004"): Nuclide("I-123", 47592.0, False),
    ("SCT", "56609000"): Nuclide("In-111", 242290.0, False),
}
# Old SNOMED RT ("SRT") codes some scanners still send, for the common ones.
_SRT_ALIASES = {"C-111A1": "77004003", "C-105A1": "40565003"}

TRACER_FDG = "fdg"
# Fluorodeoxyglucose F^18^ in CID 4021 (SCT 35321007; SRT C-B1031 before 2019).
_TRACER_CODES = {TRACER_FDG: frozenset({"35321007", "C-B1031"})}
_TRACER_TEXT = {TRACER_FDG: re.compile(r"\bfdg\b|fluorodeoxyglucose|fludeoxyglucose", re.I)}


def _code(item: Dataset) -> tuple[str, str] | None:
    scheme = str(item.get("CodingSchemeDesignator", "")).strip().upper()
    value = str(item.get("CodeValue", "")).strip()
    if not value:
        return None
    if scheme in ("SRT", "SNM3") and value in _SRT_ALIASES:
        return "SCT", _SRT_ALIASES[value]
    return scheme, value


def _by_half_life(half_life_s: float) -> Nuclide | None:
    for nuclide in _BY_CODE.values():
        if abs(half_life_s - nuclide.half_life_s) <= _HALF_LIFE_TOLERANCE * nuclide.half_life_s:
            return nuclide
    return None


def identify_nuclide(radiopharmaceutical: Dataset) -> tuple[Nuclide | None, str]:
    """The nuclide of one Radiopharmaceutical Information item, with how it was known.

    Returns:
        (nuclide, note). ``nuclide`` is None when the header names something unknown or
        nothing at all; ``note`` then says what was found. A code whose half-life disagrees
        with (0018,1075) by more than 2 % also gives None: the header contradicts itself.
    """
    half_life = radiopharmaceutical.get("RadionuclideHalfLife")
    try:
        half_life_s = float(half_life) if half_life not in (None, "") else None
    except (TypeError, ValueError):
        half_life_s = None
    items = radiopharmaceutical.get("RadionuclideCodeSequence") or []
    code = _code(items[0]) if items else None
    if code is not None:
        meaning = str(items[0].get("CodeMeaning", "")).strip() or f"{code[0]} {code[1]}"
        nuclide = _BY_CODE.get(code)
        if nuclide is None:
            return None, f"radionuclide {meaning} ({code[0]} {code[1]}) is not a known PET nuclide"
        if half_life_s is not None and (
            abs(half_life_s - nuclide.half_life_s) > _HALF_LIFE_TOLERANCE * nuclide.half_life_s
        ):
            return None, (
                f"radionuclide code says {nuclide.name} (half-life {nuclide.half_life_s:g} s) "
                f"but RadionuclideHalfLife is {half_life_s:g} s"
            )
        return nuclide, f"{nuclide.name} from RadionuclideCodeSequence"
    if half_life_s is None:
        return None, "neither RadionuclideCodeSequence nor RadionuclideHalfLife names the nuclide"
    nuclide = _by_half_life(half_life_s)
    if nuclide is None:
        return None, f"no known nuclide has a half-life of {half_life_s:g} s"
    return nuclide, f"{nuclide.name} from RadionuclideHalfLife {half_life_s:g} s"


def identify_tracer(radiopharmaceutical: Dataset) -> str | None:
    """Canonical tracer name (e.g. "fdg") of one item, or None when not recognised."""
    for item in radiopharmaceutical.get("RadiopharmaceuticalCodeSequence") or []:
        value = str(item.get("CodeValue", "")).strip()
        for tracer, values in _TRACER_CODES.items():
            if value in values:
                return tracer
    text = str(radiopharmaceutical.get("Radiopharmaceutical", "") or "")
    for tracer, pattern in _TRACER_TEXT.items():
        if pattern.search(text):
            return tracer
    return None
