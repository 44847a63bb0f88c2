"""Procedural anthropomorphic whole-body phantom: organ labels from vertex to mid-thigh.

Every patient is drawn from a seed: height, weight (via BMI), sex and age set the axial
extent, the body width and the subcutaneous fat; every organ gets its own size, position and
orientation jitter. Positions are written for a 1750 mm adult (``s`` = mm below the vertex,
``y`` anterior to posterior, ``x`` patient right to left) and scaled to the patient, so the
anatomy stays plausible for every draw. Painting order matters: a later organ overwrites an
earlier one (the heart cuts into the lung, the liver dome sits under the lung base).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from model.simulate.geometry import Grid, SizeSpec, Vec3, ellipsoid, make_grid, tube

__all__ = ["ORGAN_LABELS", "Patient", "draw_patient", "paint_organs", "section_grid"]

ORGAN_LABELS: dict[str, int] = {
    "fat": 1,
    "muscle": 2,
    "grey_matter": 3,
    "white_matter": 4,
    "lung": 5,
    "myocardium": 6,
    "blood_pool": 7,
    "liver": 8,
    "spleen": 9,
    "kidney": 10,
    "renal_pelvis": 11,
    "bladder": 12,
    "bone": 13,
    "marrow": 14,
    "stomach": 15,
    "bowel": 16,
    "salivary": 17,
}

STANDARD_HEIGHT_MM = 1750.0
FOV_TOP_MM = -15.0  # a little air above the vertex
FOV_BOTTOM_MM = 1080.0  # mid-thigh of the standard adult, scaled with height

# Outer body outline of the standard adult: s, half width (x), half depth (y), y centre.
_TORSO_S = [200.0, 300.0, 330.0, 370.0, 520.0, 680.0, 820.0, 900.0, 950.0]
_TORSO_A = [55.0, 62.0, 140.0, 168.0, 158.0, 150.0, 163.0, 168.0, 150.0]
_TORSO_B = [55.0, 60.0, 95.0, 108.0, 112.0, 115.0, 112.0, 108.0, 95.0]
_TORSO_YC = [12.0, 12.0, 5.0, 0.0, 0.0, 0.0, 5.0, 10.0, 10.0]
_STANDARD_FAT_MM = 12.0  # subcutaneous fat included in the table above

Labels = npt.NDArray[np.int16]


@dataclass(frozen=True)
class Patient:
    """Body facts drawn for one phantom, in the units DICOM headers use."""

    height_m: float
    weight_kg: float
    sex: str
    age_years: int
    fat_mm: float
    axial_scale: float
    lateral_scale: float


def draw_patient(rng: np.random.Generator) -> Patient:
    """Draw an adult: sex, height from sex-specific norms, BMI 19-34, age 25-85."""
    sex = "M" if rng.random() < 0.5 else "F"
    height_m = float(np.clip(rng.normal(1.77 if sex == "M" else 1.64, 0.07), 1.50, 1.93))
    bmi = float(rng.uniform(19.0, 34.0))
    fat_mm = float(np.clip(5.0 + 2.2 * (bmi - 20.0), 4.0, 40.0))
    return Patient(
        height_m=round(height_m, 2),
        weight_kg=round(bmi * height_m**2, 1),
        sex=sex,
        age_years=int(rng.integers(25, 86)),
        fat_mm=fat_mm,
        axial_scale=height_m * 1000.0 / STANDARD_HEIGHT_MM,
        lateral_scale=float(height_m * 1000.0 / STANDARD_HEIGHT_MM * rng.uniform(0.94, 1.06)),
    )


def patient_grid(patient: Patient, size: str) -> Grid:
    """Grid from just above the vertex to mid-thigh of this patient."""
    return make_grid(size, (FOV_TOP_MM, FOV_BOTTOM_MM * patient.axial_scale))


#: Liver centre of the standard adult (``s`` mm below the vertex), see ``_abdomen``.
LIVER_S_MM = 585.0


def section_grid(
    patient: Patient, spec: SizeSpec, rng: np.random.Generator, liver_centred: bool
) -> Grid:
    """An axial section of one to two bed lengths (150-230 mm) on a clinical grid.

    Clinical grids have up to 440x440 pixels of 1.65 mm: a whole body would cost minutes
    per phantom and gigabytes per training set, while a 2.5D network only ever sees a few
    slices. ``liver_centred`` sections hold the liver (the reference region of every
    noise and bias figure); other sections fall anywhere from the neck to the thighs.
    """
    length = float(rng.uniform(150.0, 230.0))
    if liver_centred:
        centre = LIVER_S_MM * patient.axial_scale + float(rng.uniform(-60.0, 60.0))
    else:
        centre = float(rng.uniform(150.0, FOV_BOTTOM_MM - 100.0)) * patient.axial_scale
    top = max(FOV_TOP_MM, centre - length / 2.0)
    return make_grid(spec, (top, top + length))


class _Painter:
    """Scales standard-adult coordinates to the patient and paints labels."""

    def __init__(self, grid: Grid, patient: Patient, rng: np.random.Generator) -> None:
        self.grid = grid
        self.patient = patient
        self.rng = rng
        self.labels: Labels = np.zeros(grid.shape, dtype=np.int16)

    def pos(self, s: float, y: float, x: float, jitter_mm: float = 4.0) -> Vec3:
        """Patient position of a standard-adult point, with a little random shift."""
        j = self.rng.normal(0.0, jitter_mm, size=3)
        p = self.patient
        return (s * p.axial_scale + j[0], y * p.lateral_scale + j[1], x * p.lateral_scale + j[2])

    def semi(self, s: float, y: float, x: float, jitter: float = 0.1) -> Vec3:
        """Patient semi-axes of a standard-adult organ, each scaled by ``1 +- jitter``."""
        f = self.rng.uniform(1.0 - jitter, 1.0 + jitter, size=3)
        p = self.patient
        return (s * p.axial_scale * f[0], y * p.lateral_scale * f[1], x * p.lateral_scale * f[2])

    def angles(self, base: Vec3 = (0.0, 0.0, 0.0), spread_deg: float = 8.0) -> Vec3:
        """Orientation jitter around a base orientation."""
        j = self.rng.normal(0.0, spread_deg, size=3)
        return (base[0] + j[0], base[1] + j[1], base[2] + j[2])

    def paint(
        self,
        name: str,
        center: Vec3,
        semi: Vec3,
        angles: Vec3 = (0.0, 0.0, 0.0),
        inside: str | None = None,
        power: float = 2.0,
    ) -> None:
        """Paint an ellipsoid; with ``inside``, only over voxels already labelled so."""
        box, mask = ellipsoid(self.grid, center, semi, angles, power)
        view = self.labels[box]
        allowed = view == ORGAN_LABELS[inside] if inside is not None else view > 0
        view[mask & allowed] = ORGAN_LABELS[name]


def _body(p: _Painter) -> None:
    """Outline (fat) and the muscle inside it: neck, torso, legs; the head is separate."""
    grid, pat = p.grid, p.patient
    s = grid.s_mm / pat.axial_scale
    y = grid.y_mm[None, :, None]
    x = grid.x_mm[None, None, :]
    extra = pat.fat_mm - _STANDARD_FAT_MM
    lat = pat.lateral_scale
    a = np.interp(s, _TORSO_S, _TORSO_A) * lat + extra
    b = np.interp(s, _TORSO_S, _TORSO_B) * lat + extra
    yc = np.interp(s, _TORSO_S, _TORSO_YC) * lat
    in_torso = ((s >= _TORSO_S[0]) & (s <= _TORSO_S[-1]))[:, None, None]
    a3, b3, yc3 = a[:, None, None], b[:, None, None], yc[:, None, None]
    power = np.where(s < 320.0, 2.0, 2.6)[:, None, None]
    fat_mm = np.where(s < 320.0, 0.35 * pat.fat_mm, pat.fat_mm)[:, None, None]

    def superellipse(
        cx: float,
        half_a: npt.NDArray[np.float64],
        half_b: npt.NDArray[np.float64],
        ycen: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.bool_]:
        value = np.abs((x - cx) / half_a) ** power + np.abs((y - ycen) / half_b) ** power
        return np.asarray(value <= 1.0, dtype=bool)

    outer = in_torso & superellipse(0.0, a3, b3, yc3)
    inner = in_torso & superellipse(
        0.0, np.maximum(a3 - fat_mm, 0.4 * a3), np.maximum(b3 - fat_mm, 0.4 * b3), yc3
    )
    frac = np.clip((s - 900.0) / (FOV_BOTTOM_MM - 900.0), 0.0, 1.0)[:, None, None]
    in_legs = (s >= 900.0)[:, None, None]
    leg_a = (80.0 - 12.0 * frac) * lat + extra
    leg_b = (84.0 - 14.0 * frac) * lat + extra
    leg_y = np.full_like(leg_a, 5.0 * lat)
    for side in (-1.0, 1.0):
        cx = side * 86.0 * lat
        outer |= in_legs & superellipse(cx, leg_a, leg_b, leg_y)
        inner |= in_legs & superellipse(
            cx,
            np.maximum(leg_a - fat_mm, 0.5 * leg_a),
            np.maximum(leg_b - fat_mm, 0.5 * leg_b),
            leg_y,
        )
    p.labels[outer] = ORGAN_LABELS["fat"]
    p.labels[inner] = ORGAN_LABELS["muscle"]


def _head(p: _Painter) -> None:
    """Scalp, skull, grey and white matter, deep grey nuclei, cerebellum, salivary glands."""
    brain_c = p.pos(112.0, 8.0, 0.0, 3.0)
    brain = p.semi(88.0, 86.0, 68.0, 0.06)
    scalp = (brain[0] + 16.0, brain[1] + 16.0, brain[2] + 14.0)
    skull = (brain[0] + 9.0, brain[1] + 9.0, brain[2] + 8.0)
    box, mask = ellipsoid(p.grid, brain_c, scalp)
    p.labels[box][mask] = ORGAN_LABELS["muscle"]
    p.paint("bone", brain_c, skull)
    p.paint("grey_matter", brain_c, brain)
    cortex = 7.0 + p.rng.uniform(-1.0, 1.0)
    p.paint("white_matter", brain_c, (brain[0] - cortex, brain[1] - cortex, brain[2] - cortex))
    for side in (-1.0, 1.0):
        c = (brain_c[0] + 5.0, brain_c[1] - 2.0, brain_c[2] + side * 20.0 * p.patient.lateral_scale)
        p.paint("grey_matter", c, p.semi(13.0, 20.0, 9.0, 0.1), p.angles(spread_deg=5.0))
    cereb_c = (brain_c[0] + 55.0 * p.patient.axial_scale, brain_c[1] + 40.0, brain_c[2])
    p.paint("grey_matter", cereb_c, p.semi(25.0, 30.0, 48.0, 0.08))
    for side in (-1.0, 1.0):
        p.paint("salivary", p.pos(205.0, 10.0, side * 48.0, 3.0), p.semi(24.0, 16.0, 11.0))
        p.paint("salivary", p.pos(240.0, -25.0, side * 33.0, 3.0), p.semi(11.0, 11.0, 10.0))


def _thorax(p: _Painter) -> None:
    """Lungs, heart (myocardium around the left ventricular cavity), great vessels."""
    for side in (-1.0, 1.0):
        c = p.pos(430.0, 15.0, side * 82.0, 4.0)
        semi = p.semi(135.0 if side < 0 else 140.0, 82.0, 62.0, 0.08)
        p.paint("lung", c, semi, p.angles(spread_deg=4.0), inside="muscle", power=2.3)
    heart_c = p.pos(495.0, -25.0, 30.0, 5.0)
    heart_axes = p.angles((35.0, -20.0, 40.0), 6.0)
    p.paint("blood_pool", p.pos(485.0, -35.0, -12.0, 4.0), p.semi(44.0, 34.0, 42.0))
    outer = p.semi(54.0, 44.0, 46.0, 0.08)
    wall = float(p.rng.uniform(9.0, 12.0))
    p.paint("myocardium", heart_c, outer, heart_axes)
    p.paint("blood_pool", heart_c, (outer[0] - wall, outer[1] - wall, outer[2] - wall), heart_axes)
    arch = [
        p.pos(470.0, -15.0, 5.0, 2.0),
        p.pos(380.0, -12.0, 0.0, 2.0),
        p.pos(350.0, 15.0, 10.0, 2.0),
        p.pos(375.0, 38.0, 22.0, 2.0),
        p.pos(560.0, 40.0, 18.0, 2.0),
        p.pos(780.0, 30.0, 8.0, 2.0),
    ]
    box, dist, _ = tube(p.grid, arch, 12.0 * p.patient.lateral_scale)
    view = p.labels[box]
    view[(dist <= 12.0 * p.patient.lateral_scale) & (view > 0)] = ORGAN_LABELS["blood_pool"]


def _abdomen(p: _Painter) -> None:
    """Bowel, stomach, liver, spleen, kidneys with renal pelvis, bladder."""
    p.paint("bowel", p.pos(760.0, -10.0, 0.0, 6.0), p.semi(120.0, 70.0, 110.0), inside="muscle")
    p.paint("stomach", p.pos(575.0, -30.0, 62.0, 5.0), p.semi(45.0, 38.0, 42.0), p.angles())
    liver_c = p.pos(585.0, -5.0, -55.0, 5.0)
    liver = p.semi(78.0, 82.0, 100.0, 0.08)
    box, mask = ellipsoid(p.grid, liver_c, liver, p.angles(spread_deg=4.0))
    s, _, x = p.grid.coords(box)
    # Left lobe thins out towards the patient's left and downwards.
    taper = (x - liver_c[2]) / liver[2] + 0.7 * (s - liver_c[0]) / liver[0] < 0.75
    view = p.labels[box]
    view[mask & taper & (view > 0)] = ORGAN_LABELS["liver"]
    p.paint(
        "spleen",
        p.pos(565.0, 55.0, 105.0, 4.0),
        p.semi(55.0, 45.0, 27.0),
        p.angles((0.0, 0.0, -30.0)),
    )
    for side, s_kid in ((-1.0, 680.0), (1.0, 660.0)):
        c = p.pos(s_kid, 58.0, side * 74.0, 4.0)
        angles = p.angles((0.0, side * 12.0, side * 25.0), 5.0)
        p.paint("kidney", c, p.semi(55.0, 28.0, 30.0, 0.08), angles)
        pelvis_c = (c[0], c[1] - 4.0, c[2] - side * 12.0)
        p.paint("renal_pelvis", pelvis_c, p.semi(16.0, 9.0, 9.0, 0.2), angles, inside="kidney")
    fill = float(p.rng.uniform(0.6, 1.25))
    p.paint("bladder", p.pos(880.0, -45.0, 0.0, 4.0), p.semi(35.0 * fill, 40.0 * fill, 50.0 * fill))


def _bones(p: _Painter) -> None:
    """Spine (vertebral bodies and discs), pelvis and femurs: cortical shell around marrow."""
    spine = [
        p.pos(220.0, 12.0, 0.0, 1.0),
        p.pos(320.0, 30.0, 0.0, 1.0),
        p.pos(460.0, 72.0, 0.0, 1.0),
        p.pos(660.0, 55.0, 0.0, 1.0),
        p.pos(790.0, 50.0, 0.0, 1.0),
        p.pos(870.0, 80.0, 0.0, 1.0),
    ]
    lat = p.patient.lateral_scale
    radius = 19.0 * lat
    box, dist, arc = tube(p.grid, spine, radius)
    view = p.labels[box]
    mask = (dist <= radius) & (view > 0)
    view[mask] = ORGAN_LABELS["bone"]
    inner = dist <= radius - 4.0
    pitch = 28.0 * p.patient.axial_scale
    disc = np.mod(arc, pitch) < 0.22 * pitch
    view[mask & inner & ~disc] = ORGAN_LABELS["marrow"]
    view[mask & inner & disc] = ORGAN_LABELS["muscle"]
    for side in (-1.0, 1.0):
        ilium_c = p.pos(800.0, 35.0, side * 98.0, 3.0)
        ilium = p.semi(68.0, 58.0, 18.0, 0.08)
        angles = p.angles((0.0, 0.0, side * 35.0), 4.0)
        p.paint("bone", ilium_c, ilium, angles)
        p.paint("marrow", ilium_c, (ilium[0] - 5.0, ilium[1] - 5.0, ilium[2] - 5.0), angles)
        head = p.pos(905.0, 5.0, side * 88.0, 2.0)
        shaft_end = p.pos(1300.0, 10.0, side * 80.0, 2.0)
        box, dist, _ = tube(p.grid, [head, shaft_end], 15.0 * lat)
        view = p.labels[box]
        view[(dist <= 15.0 * lat) & (view > 0)] = ORGAN_LABELS["bone"]
        view[(dist <= 10.0 * lat) & (view > 0)] = ORGAN_LABELS["marrow"]
        p.paint("bone", head, (24.0 * lat,) * 3)
        p.paint("marrow", head, (19.0 * lat,) * 3)


def paint_organs(grid: Grid, patient: Patient, rng: np.random.Generator) -> Labels:
    """Label volume (``ORGAN_LABELS`` codes, 0 = air) of one patient on ``grid``."""
    painter = _Painter(grid, patient, rng)
    _body(painter)
    _head(painter)
    _thorax(painter)
    _abdomen(painter)
    _bones(painter)
    return painter.labels


def organ_radius_mm(labels: Labels, spacing_mm: tuple[float, float, float], name: str) -> float:
    """Radius of the sphere with the organ's volume (a size check for tests and reports)."""
    n = int(np.count_nonzero(labels == ORGAN_LABELS[name]))
    return float((3.0 * n * float(np.prod(spacing_mm)) / (4.0 * math.pi)) ** (1.0 / 3.0))
