"""Target checks of a trained UniPET, computed from an evaluation's per-DRF tables.

The targets say when one universal network is worth shipping instead of the models it
replaces: about as good as a DRF-specific model at that model's own DRF, clearly better than
the vanilla universal model, better than every DRF-specific model at DRFs none was trained
on, full-dose liver texture, small lesion bias, and a margin over classical filters. From
1.1 on, lesions are judged lesion-first: SUVpeak bias against the noise-free reconstruction
and the full dose, contrast of 10-13 mm lesions no lower than a Gaussian at the same noise,
no more false hot spots than the full dose, a full-dose input returned almost unchanged,
and a DRF estimate that is right to a factor 1.15 in the median.

``tables`` is the ``tables`` object of ``results.json`` (``model.evaluation.report``): DRF
keys as text (``"4"``, ``"0.5"``), rows with ``method`` and ``means``; a mean may be null.
A check whose methods or figures are absent is skipped, not failed: an evaluation may compare
fewer methods, and a missing row is no evidence of a miss. Each release keeps the thresholds
it shipped with (:func:`limits_for_version`), so a card packaged again checks the same targets.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from model.evaluation.drf_accuracy import BAND_FACTOR, DrfOverall
from model.evaluation.full_dose import FULL_DOSE_DRF, FullDoseInput
from model.evaluation.lesion_tables import grid_lines
from model.evaluation.methods import FULL_DOSE, matched_name

__all__ = [
    "LIMITS_1_0",
    "Tables",
    "TargetCheck",
    "TargetLimits",
    "TargetNames",
    "check_targets",
    "limits_for_version",
    "targets_markdown",
]

Tables = Mapping[str, Sequence[Mapping[str, object]]]

SPECIFIC_TOLERANCE_DB = 0.1
VANILLA_MARGIN_DB = 0.3
CLASSICAL_MARGIN_DB = 1.0
# (lowest DRF, highest DRF, largest |lesion SUVmax bias| %); the first band that holds a DRF
# sets its limit, so DRF 20 is held to 5 %.
LESION_BIAS_LIMITS_PCT = ((0.0, 20.0, 5.0), (20.0, 100.0, 10.0))
CONTRAST_KEY = "cr_10_13"
# Thresholds are sums such as 29.7 + 0.3, which float arithmetic may put a hair off.
_EPS = 1e-9


@dataclass(frozen=True)
class TargetCheck:
    """One target at one DRF (``drf`` None: over all DRFs); ``passed`` compares the two."""

    check: str
    drf: float | None
    value: float
    threshold: float
    passed: bool

    def to_json_dict(self) -> dict[str, object]:
        """Plain JSON-ready form for the model card."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TargetLimits:
    """The thresholds of one release's targets; None: that target was not set then.

    ``peak_bias_limits_pct`` holds (lowest DRF, highest DRF, largest |median SUVpeak bias|).
    """

    cov_ratio_tolerance: float = 0.15  # liver CoV ratio within [0.85, 1.15]
    peak_bias_limits_pct: tuple[tuple[float, float, float], ...] | None = (
        (1.0, 20.0, 5.0),
        (50.0, 100.0, 10.0),
    )
    contrast_drf: float | None = 20.0
    hot_spots: bool = True
    full_dose_max_change_pct: float | None = 2.0
    full_dose_min_cov_ratio: float | None = 0.85
    full_dose_max_drf_estimate: float | None = 1.5
    drf_median_factor_error: float | None = 1.15
    drf_within_band: float | None = 0.9


LIMITS_1_0 = TargetLimits(
    cov_ratio_tolerance=0.2,
    peak_bias_limits_pct=None,
    contrast_drf=None,
    hot_spots=False,
    full_dose_max_change_pct=None,
    full_dose_min_cov_ratio=None,
    full_dose_max_drf_estimate=None,
    drf_median_factor_error=None,
    drf_within_band=None,
)


def limits_for_version(version: str) -> TargetLimits:
    """The targets a release was checked against: 1.0.x its own, later ones today's."""
    return LIMITS_1_0 if re.match(r"1\.0(\.|$)", version) else TargetLimits()


@dataclass(frozen=True)
class TargetNames:
    """Method names as the evaluation called them; DRF-specific models are ``<prefix><drf>``."""

    unipet: str = "unipet"
    vanilla: str = "vanilla"
    specific_prefix: str = "drf"
    classical: tuple[str, ...] = ("gaussian", "nlm")
    full_dose: str = FULL_DOSE
    matched: str = ""  # the Gaussian matched to UniPET; "" for the usual name
    other_seeds: tuple[str, ...] = ()  # the shipped recipe trained with other seeds

    @property
    def matched_gaussian(self) -> str:
        """Row name of the Gaussian matched to UniPET's noise."""
        return self.matched or matched_name(self.unipet)


def _means(rows: Sequence[Mapping[str, object]]) -> dict[str, Mapping[str, object]]:
    """Rows by method name."""
    out: dict[str, Mapping[str, object]] = {}
    for row in rows:
        means = row.get("means")
        if isinstance(means, Mapping):
            out[str(row.get("method"))] = means
    return out


def _figure(by_method: Mapping[str, Mapping[str, object]], method: str, key: str) -> float | None:
    """A finite mean figure of one method, or None (absent method, null or non-finite value)."""
    value = by_method.get(method, {}).get(key)
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return None
    return float(value)


def _specific_models(methods: Sequence[str], prefix: str) -> list[str]:
    """Names of the DRF-specific models (``drf4``, ``drf10``, ...) among ``methods``."""
    pattern = re.compile(re.escape(prefix) + r"\d+(\.\d+)?")
    return [m for m in methods if pattern.fullmatch(m)]


def _at_least(check: str, drf: float | None, value: float, threshold: float) -> TargetCheck:
    """A ``value >= threshold`` check."""
    return TargetCheck(check, drf, value, threshold, value >= threshold - _EPS)


def _at_most(check: str, drf: float | None, value: float, threshold: float) -> TargetCheck:
    """A ``value <= threshold`` check."""
    return TargetCheck(check, drf, value, threshold, value <= threshold + _EPS)


def _psnr_checks(
    by_method: Mapping[str, Mapping[str, object]], drf: float, seen: bool, names: TargetNames
) -> list[TargetCheck]:
    """Targets (a), (b), (c) and (f) at one DRF: UniPET's PSNR against the other methods."""
    psnr = _figure(by_method, names.unipet, "psnr_db")
    if psnr is None:
        return []
    checks = []
    own = _figure(by_method, f"{names.specific_prefix}{drf:g}", "psnr_db")
    if seen and own is not None:
        text = f"PSNR >= {names.specific_prefix}{drf:g} - {SPECIFIC_TOLERANCE_DB:g} dB"
        checks.append(_at_least(text, drf, psnr, own - SPECIFIC_TOLERANCE_DB))
    vanilla = _figure(by_method, names.vanilla, "psnr_db")
    if vanilla is not None:
        text = f"PSNR >= {names.vanilla} + {VANILLA_MARGIN_DB:g} dB"
        checks.append(_at_least(text, drf, psnr, vanilla + VANILLA_MARGIN_DB))
    specific = [
        value
        for m in _specific_models(list(by_method), names.specific_prefix)
        if (value := _figure(by_method, m, "psnr_db")) is not None
    ]
    if not seen and specific:
        best = max(specific)
        text = "PSNR > every DRF-specific model (unseen DRF)"
        checks.append(TargetCheck(text, drf, psnr, best, psnr > best))
    classical = [
        value for m in names.classical if (value := _figure(by_method, m, "psnr_db")) is not None
    ]
    if classical:
        text = f"PSNR >= best of {'/'.join(names.classical)} + {CLASSICAL_MARGIN_DB:g} dB"
        checks.append(_at_least(text, drf, psnr, max(classical) + CLASSICAL_MARGIN_DB))
    return checks


def _band_limit(drf: float, bands: Sequence[tuple[float, float, float]]) -> float | None:
    """The limit of the first (low, high, limit) band that holds ``drf``; None if none does."""
    for low, high, limit in bands:
        if low - _EPS <= drf <= high + _EPS:
            return limit
    return None


def _quantitation_checks(
    by_method: Mapping[str, Mapping[str, object]],
    drf: float,
    names: TargetNames,
    limits: TargetLimits,
) -> list[TargetCheck]:
    """Targets (d) and (e) at one DRF: liver texture and lesion SUVmax bias of UniPET."""
    checks = []
    ratio = _figure(by_method, names.unipet, "liver_cov_ratio")
    if ratio is not None:
        tolerance = limits.cov_ratio_tolerance
        text = f"|liver CoV ratio - 1| <= {tolerance:g}"
        checks.append(_at_most(text, drf, abs(ratio - 1.0), tolerance))
    bias = _figure(by_method, names.unipet, "lesion_max_bias_pct")
    limit = _band_limit(drf, LESION_BIAS_LIMITS_PCT)
    if bias is not None and limit is not None:
        text = f"|lesion SUVmax bias| <= {limit:g} %"
        checks.append(TargetCheck(text, drf, abs(bias), limit, abs(bias) <= limit + _EPS))
    return checks


def _mean_vanilla_check(
    tables: Mapping[float, Mapping[str, Mapping[str, object]]], names: TargetNames
) -> list[TargetCheck]:
    """Target (b) on the mean over the DRFs above 1 where both UniPET and vanilla have a
    PSNR."""
    pairs = [
        (unipet, vanilla)
        for by_method in tables.values()
        if (unipet := _figure(by_method, names.unipet, "psnr_db")) is not None
        and (vanilla := _figure(by_method, names.vanilla, "psnr_db")) is not None
    ]
    if not pairs:
        return []
    unipet_mean = sum(p[0] for p in pairs) / len(pairs)
    vanilla_mean = sum(p[1] for p in pairs) / len(pairs)
    text = f"mean PSNR over DRFs >= {names.vanilla} + {VANILLA_MARGIN_DB:g} dB"
    return [_at_least(text, None, unipet_mean, vanilla_mean + VANILLA_MARGIN_DB)]


def _lesion_checks(
    by_method: Mapping[str, Mapping[str, object]],
    drf: float,
    names: TargetNames,
    limits: TargetLimits,
) -> list[TargetCheck]:
    """Lesion-first targets at one DRF: SUVpeak bias, 10-13 mm contrast, false hot spots."""
    checks = []
    limit = _band_limit(drf, limits.peak_bias_limits_pct or ())
    for key, reference in (
        ("lesion_peak_bias_nf_pct", "noise-free"),
        ("lesion_peak_bias_fd_pct", "full dose"),
    ):
        bias = _figure(by_method, names.unipet, key)
        if bias is not None and limit is not None:
            text = f"|median lesion SUVpeak bias vs {reference}| <= {limit:g} %"
            checks.append(_at_most(text, drf, abs(bias), limit))
    contrast = _figure(by_method, names.unipet, CONTRAST_KEY)
    matched = _figure(by_method, names.matched_gaussian, CONTRAST_KEY)
    if drf == limits.contrast_drf and contrast is not None and matched is not None:
        text = f"CR of 10-13 mm lesions >= {names.matched_gaussian} (same liver noise)"
        checks.append(_at_least(text, drf, contrast, matched))
    spots = _figure(by_method, names.unipet, "false_hot_spots")
    full = _figure(by_method, names.full_dose, "false_hot_spots")
    if limits.hot_spots and spots is not None and full is not None:
        text = f"false hot spots per volume <= {names.full_dose}"
        checks.append(_at_most(text, drf, spots, full))
    return checks


def _full_dose_checks(
    check: FullDoseInput | None, names: TargetNames, limits: TargetLimits
) -> list[TargetCheck]:
    """A full-dose input comes back almost unchanged and is estimated as full dose."""
    if check is None:
        return []
    row, out = check.row(names.unipet), []
    change, cov = limits.full_dose_max_change_pct, limits.full_dose_min_cov_ratio
    if row is not None and change is not None and row.hottest_lesion_max_bias_pct is not None:
        text = f"full-dose input: |hottest-lesion SUVmax change| <= {change:g} % (worst phantom)"
        out.append(_at_most(text, FULL_DOSE_DRF, abs(row.hottest_lesion_max_bias_pct), change))
    if row is not None and cov is not None and row.liver_cov_ratio is not None:
        text = f"full-dose input: liver CoV / input CoV >= {cov:g} (worst phantom)"
        out.append(_at_least(text, FULL_DOSE_DRF, row.liver_cov_ratio, cov))
    estimate, highest = check.drf_estimate, limits.full_dose_max_drf_estimate
    if estimate is not None and highest is not None:
        text = f"full-dose input: DRF estimate <= {highest:g} (highest)"
        out.append(_at_most(text, FULL_DOSE_DRF, estimate, highest))
    return out


def _drf_estimate_checks(overall: DrfOverall | None, limits: TargetLimits) -> list[TargetCheck]:
    """The DRF estimate over every test volume: median factor error and share within x1.5."""
    if overall is None:
        return []
    out = []
    median, share = limits.drf_median_factor_error, limits.drf_within_band
    if median is not None:
        text = f"DRF estimate: median factor error <= {median:g}"
        out.append(_at_most(text, None, overall.median_factor_error, median))
    if share is not None:
        text = f"DRF estimate: share within x{BAND_FACTOR:g} >= {share:.0%}"
        out.append(_at_least(text, None, overall.fraction_within_band, share))
    return out


def check_targets(
    tables: Tables,
    training_drfs: Sequence[float],
    names: TargetNames | None = None,
    *,
    limits: TargetLimits | None = None,
    full_dose: FullDoseInput | None = None,
    drf_overall: DrfOverall | None = None,
) -> list[TargetCheck]:
    """Every target check the inputs allow: DRF by DRF (ascending), then over all DRFs.

    Args:
        tables: per-DRF tables as in ``results.json``.
        training_drfs: DRFs UniPET was trained on; the others are unseen.
        names: method names used in the evaluation.
        limits: the release's thresholds (default: today's).
        full_dose: the full-dose-in check of the evaluation, if it had DRF 1.
        drf_overall: the DRF estimate's accuracy over every test volume, if measured.

    Raises:
        ValueError: a table key is not a number.
    """
    names = names or TargetNames()
    limits = limits or TargetLimits()
    seen = {float(d) for d in training_drfs}
    by_drf = {float(key): _means(rows) for key, rows in tables.items()}
    checks: list[TargetCheck] = []
    # At DRF 1 the input is the reference itself: PSNR there says how unchanged a full dose
    # comes back (the full-dose checks below), not how well noise is removed, and a
    # near-identity network's 60-75 dB would outweigh every real DRF in the mean.
    denoised = {drf: tables for drf, tables in by_drf.items() if drf > FULL_DOSE_DRF}
    for drf in sorted(by_drf):
        if drf in denoised:
            checks += _psnr_checks(by_drf[drf], drf, drf in seen, names)
        checks += _quantitation_checks(by_drf[drf], drf, names, limits)
        checks += _lesion_checks(by_drf[drf], drf, names, limits)
    checks += _mean_vanilla_check(denoised, names)
    checks += _full_dose_checks(full_dose, names, limits)
    return checks + _drf_estimate_checks(drf_overall, limits)


def _cell(value: float | None, fmt: str) -> str:
    """A figure of the targets table: ``inf`` for an infinite one, ``n/a`` for null."""
    if value is None:
        return "n/a"
    return "inf" if math.isinf(value) else fmt.format(value)


def targets_markdown(checks: Sequence[TargetCheck]) -> list[str]:
    """The checks as a markdown section: how many are met, then one row each with PASS/MISS."""
    if not checks:
        return ["## Targets", "", "No target could be checked: the methods it needs are absent."]
    head = ["check (UniPET)", "DRF", "value", "threshold", "result"]
    lines = grid_lines(
        head,
        (
            [
                c.check.replace("|", "\\|"),
                "all" if c.drf is None else _cell(c.drf, "{:g}"),
                _cell(c.value, "{:.3f}"),
                _cell(c.threshold, "{:.3f}"),
                "PASS" if c.passed else "MISS",
            ]
            for c in checks
        ),
    )
    met = sum(1 for c in checks if c.passed)
    return ["## Targets", "", f"{met} of {len(checks)} checks met.", "", *lines]
