"""Training data on disk: phantoms split by seed, one npz per phantom, a JSON manifest.

Splits are by phantom seed and checked to be disjoint, so no patient (and no lesion) is seen
in training and again in validation or test: split by slice or patch and the validation
score measures memory, not generalisation. Files are a cache generated at run time; a file
already present with the same seed, size, tracer and DRFs is reused rather than redrawn.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from model.simulate.geometry import Size
from model.simulate.study import simulate_study
from model.simulate.types import ScannerModel, SimulatedStudy, TracerDose

__all__ = [
    "SPLITS",
    "build_dataset",
    "default_splits",
    "load_study",
    "parse_split_spec",
    "save_study",
    "validate_splits",
]

SPLITS = ("train", "validation", "test")
MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


def default_splits(
    n: int, base_seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, list[int]]:
    """Consecutive seeds from ``base_seed``, cut into train/validation/test by fraction.

    Validation and test get at least one phantom each once ``n >= 3``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    n_val = max(1, round(n * fractions[1])) if n >= 3 else 0
    n_test = max(1, round(n * fractions[2])) if n >= 3 else 0
    n_train = n - n_val - n_test
    seeds = list(range(base_seed, base_seed + n))
    return {
        "train": seeds[:n_train],
        "validation": seeds[n_train : n_train + n_val],
        "test": seeds[n_train + n_val :],
    }


def parse_split_spec(spec: str) -> dict[str, list[int]]:
    """Parse ``"train:0-79,validation:80-89,test:90-99"`` (ranges inclusive, or single seeds)."""
    splits: dict[str, list[int]] = {name: [] for name in SPLITS}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        match = re.fullmatch(r"(train|validation|test):(\d+)(?:-(\d+))?", part)
        if match is None:
            raise ValueError(f"bad split item {part!r}; expected e.g. 'train:0-79'")
        name, lo, hi = match.group(1), int(match.group(2)), match.group(3)
        last = int(hi) if hi is not None else lo
        if last < lo:
            raise ValueError(f"empty seed range in {part!r}")
        splits[name].extend(range(lo, last + 1))
    return validate_splits(splits)


def validate_splits(splits: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
    """Refuse unknown split names, repeated seeds and any seed in two splits."""
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split names {sorted(unknown)}; expected {SPLITS}")
    owner: dict[int, str] = {}
    for name, seeds in splits.items():
        for seed in seeds:
            if seed in owner:
                raise ValueError(f"seed {seed} is in both {owner[seed]!r} and {name!r}")
            owner[seed] = name
    return {name: list(splits.get(name, [])) for name in SPLITS}


def _meta(study: SimulatedStudy, drfs: Sequence[float]) -> dict[str, object]:
    """JSON-ready description of a study (everything except the arrays)."""
    return {
        "format_version": FORMAT_VERSION,
        "seed": study.seed,
        "size": study.size,
        "spacing_mm": list(study.spacing_mm),
        "shape": list(study.full_dose_bqml.shape),
        "drfs": list(drfs),
        "tracer": dataclasses.asdict(study.tracer),
        "scanner": dataclasses.asdict(study.scanner),
        "lesion_suv": {str(k): v for k, v in study.lesion_suv.items()},
        "lesion_diameter_mm": {str(k): v for k, v in study.lesion_diameter_mm.items()},
        "full_dose_counts": study.full_dose_counts,
        "low_dose_counts": [study.low_dose_counts[d] for d in drfs],
        "suv_per_bqml": study.suv_per_bqml,
        "crop_origin_yx": list(study.crop_origin_yx),
        "full_dose_counts_per_20cm": round(
            study.full_dose_counts * 200.0 / (study.spacing_mm[0] * study.full_dose_bqml.shape[0])
        ),
    }


def _drf_key(drf: float) -> str:
    """Array name of one DRF's image, e.g. ``low_dose_drf20``, ``low_dose_drf7.5``."""
    return f"low_dose_drf{drf:g}"


def save_study(
    study: SimulatedStudy, path: Path, options: Mapping[str, object] | None = None
) -> dict[str, object]:
    """Write one study to ``path`` (npz, float32 images, int16 labels); returns its metadata.

    ``options`` (how it was simulated) are stored with the metadata, for the cache check.
    """
    drfs = list(study.low_dose_bqml)
    meta = {**_meta(study, drfs), **(options or {})}
    arrays: dict[str, npt.NDArray[np.generic]] = {
        "full_dose_bqml": study.full_dose_bqml,
        "truth_bqml": study.truth_bqml,
        "organ_labels": study.organ_labels,
        "lesion_labels": study.lesion_labels,
        **{_drf_key(d): study.low_dose_bqml[d] for d in drfs},
    }
    if study.mu_map_per_cm is not None:
        arrays["mu_map_per_cm"] = study.mu_map_per_cm
    if study.noise_free_bqml is not None:
        arrays["noise_free_bqml"] = study.noise_free_bqml
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial.npz")
    arrays["meta_json"] = np.array(json.dumps(meta))
    # NumPy's stubs type ``**kwds`` of savez as if they could be ``allow_pickle``.
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(path)  # a crash never leaves a truncated file under the final name
    return meta


def load_study(path: Path) -> SimulatedStudy:
    """Read a study written by :func:`save_study`."""
    with np.load(path) as npz:
        meta = json.loads(str(npz["meta_json"]))
        drfs = [float(d) for d in meta["drfs"]]
        return SimulatedStudy(
            seed=int(meta["seed"]),
            size=str(meta["size"]),
            spacing_mm=tuple(meta["spacing_mm"]),
            full_dose_bqml=npz["full_dose_bqml"],
            low_dose_bqml={d: npz[_drf_key(d)] for d in drfs},
            truth_bqml=npz["truth_bqml"],
            organ_labels=npz["organ_labels"],
            lesion_labels=npz["lesion_labels"],
            tracer=TracerDose(**meta["tracer"]),
            scanner=ScannerModel(**meta["scanner"]),
            lesion_suv={int(k): float(v) for k, v in meta["lesion_suv"].items()},
            lesion_diameter_mm={int(k): float(v) for k, v in meta["lesion_diameter_mm"].items()},
            mu_map_per_cm=npz.get("mu_map_per_cm"),
            full_dose_counts=int(meta["full_dose_counts"]),
            low_dose_counts=dict(zip(drfs, (int(c) for c in meta["low_dose_counts"]), strict=True)),
            noise_free_bqml=npz.get("noise_free_bqml"),
            crop_origin_yx=_pair(meta.get("crop_origin_yx", (0, 0))),
        )


def _pair(values: Sequence[int]) -> tuple[int, int]:
    """Two integers from a JSON list."""
    first, second = values
    return int(first), int(second)


def _cached_meta(path: Path) -> dict[str, object] | None:
    """Metadata of an existing cache file, or None when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as npz:
            return dict(json.loads(str(npz["meta_json"])))
    except (OSError, ValueError, KeyError):
        return None


def _matches(
    meta: Mapping[str, object],
    seed: int,
    size: str,
    tracer: str,
    drfs: Sequence[float],
    options: Mapping[str, object],
) -> bool:
    """Whether a cached file was made with exactly these settings."""
    tracer_meta = meta.get("tracer")
    return (
        meta.get("format_version") == FORMAT_VERSION
        and meta.get("seed") == seed
        and meta.get("size") == size
        and meta.get("drfs") == [float(d) for d in drfs]
        and isinstance(tracer_meta, dict)
        and tracer_meta.get("tracer") == tracer
        and all(meta.get(key, False) == value for key, value in options.items())
    )


def build_dataset(
    out: Path,
    splits: Mapping[str, Sequence[int]],
    drfs: Sequence[float],
    size: Size = "small",
    tracer: str = "fdg",
    force: bool = False,
    held_out_scanners: bool = False,
    noise_free: bool = False,
) -> Iterable[dict[str, object]]:
    """Simulate every seed of every split into ``out`` and write ``manifest.json`` at the end.

    Size ``clinical`` draws a clinical scanner profile per phantom (``held_out_scanners``:
    from the profiles no training set has); its training sections fall anywhere from neck
    to thighs (mostly on the liver), its validation and test sections hold the liver, where
    every noise and bias figure is measured. ``noise_free`` adds the noiseless
    reconstruction (the lesion reference of the evaluation).

    Yields one manifest entry per phantom as it is done, so a CLI can report progress.
    """
    checked = validate_splits(splits)
    options = {"held_out_scanners": held_out_scanners, "noise_free": noise_free}
    entries = []
    for split, seeds in checked.items():
        for seed in seeds:
            path = out / split / f"seed{seed:06d}_{size}_{tracer}.npz"
            meta = None if force else _cached_meta(path)
            cached = meta is not None and _matches(meta, seed, size, tracer, drfs, options)
            if meta is None or not cached:
                study = simulate_study(
                    seed=seed,
                    drfs=list(drfs),
                    size=size,
                    tracer=tracer,
                    held_out_scanners=held_out_scanners,
                    liver_centred=None if split == "train" else True,
                    noise_free=noise_free,
                )
                meta = {**save_study(study, path, options), **options}
            entry = {"split": split, "file": str(path.relative_to(out)), "cached": cached, **meta}
            entries.append(entry)
            yield entry
    manifest = {
        "format_version": FORMAT_VERSION,
        "size": size,
        "tracer": tracer,
        "drfs": [float(d) for d in drfs],
        **options,
        "splits": checked,
        "phantoms": entries,
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1))
