"""Target checks of a trained UniPET, computed from an evaluation's per-DRF mean tables.

The targets say when one universal network is worth shipping instead of the models it
replaces: about as good as a DRF-specific model at that model's own DRF, clearly better than
the vanilla universal model, better than every DRF-specific model at DRFs none was trained
on, full-dose liver texture, small lesion SUVmax bias, and a margin over classical filters.

``tables`` is the ``tables`` object of ``results.json`` (``model.evaluation.report``): DRF
keys as text (``"4"``, ``"0.5"``), rows with ``method`` and ``means``; a mean may be null.
A check whose methods or figures are absent is skipped, not failed: an evaluation may compare
fewer methods, and a missing row is no evidence of a miss.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Tables", "TargetCheck", "TargetNames", "check_targets"]

Tables = Mapping[str, Sequence[Mapping[str, object]]]

SPECIFIC_TOLERANCE_DB = 0.1
VANILLA_MARGIN_DB = 0.3
CLASSICAL_MARGIN_DB = 1.0
COV_RATIO_TOLERANCE = 0.2  # liver CoV ratio within [0.8, 1.2]
LESION_BIAS_LIMITS_PCT = ((20.0, 5.0), (100.0, 10.0))  # (up to this DRF, max |SUVmax bias|)
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
class TargetNames:
    """Method names as the evaluation called them; DRF-specific models are ``<prefix><drf>``."""

    unipet: str = "unipet"
    vanilla: str = "vanilla"
    specific_prefix: str = "drf"
    classical: tuple[str, ...] = ("gaussian", "nlm")


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


def _lesion_bias_limit_pct(drf: float) -> float | None:
    """Largest allowed |lesion SUVmax bias| at ``drf``; None above the highest target DRF."""
    for up_to, limit in LESION_BIAS_LIMITS_PCT:
        if drf <= up_to:
            return limit
    return None


def _quantitation_checks(
    by_method: Mapping[str, Mapping[str, object]], drf: float, names: TargetNames
) -> list[TargetCheck]:
    """Targets (d) and (e) at one DRF: liver texture and lesion SUVmax bias of UniPET."""
    checks = []
    ratio = _figure(by_method, names.unipet, "liver_cov_ratio")
    if ratio is not None:
        text = f"|liver CoV ratio - 1| <= {COV_RATIO_TOLERANCE:g}"
        deviation = abs(ratio - 1.0)
        passed = deviation <= COV_RATIO_TOLERANCE + _EPS
        checks.append(TargetCheck(text, drf, deviation, COV_RATIO_TOLERANCE, passed))
    bias = _figure(by_method, names.unipet, "lesion_max_bias_pct")
    limit = _lesion_bias_limit_pct(drf)
    if bias is not None and limit is not None:
        text = f"|lesion SUVmax bias| <= {limit:g} %"
        checks.append(TargetCheck(text, drf, abs(bias), limit, abs(bias) <= limit + _EPS))
    return checks


def _mean_vanilla_check(
    tables: Mapping[float, Mapping[str, Mapping[str, object]]], names: TargetNames
) -> list[TargetCheck]:
    """Target (b) on the mean over DRFs where both UniPET and vanilla have a PSNR."""
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


def check_targets(
    tables: Tables, training_drfs: Sequence[float], names: TargetNames | None = None
) -> list[TargetCheck]:
    """Every target check the tables allow, DRF by DRF (ascending), then the mean over DRFs.

    Args:
        tables: per-DRF mean tables as in ``results.json``.
        training_drfs: DRFs UniPET was trained on; the others are unseen.
        names: method names used in the evaluation.

    Raises:
        ValueError: a table key is not a number.
    """
    names = names or TargetNames()
    seen = {float(d) for d in training_drfs}
    by_drf = {float(key): _means(rows) for key, rows in tables.items()}
    checks: list[TargetCheck] = []
    for drf in sorted(by_drf):
        checks += _psnr_checks(by_drf[drf], drf, drf in seen, names)
        checks += _quantitation_checks(by_drf[drf], drf, names)
    return checks + _mean_vanilla_check(by_drf, names)
