"""The human model card: markdown rendered from the shipped JSON card.

The JSON card is what tools read; this page is what a reader checks before trusting the
weights: their identity (version, SHA-256), what the network is and was trained on, how it
did on held-out phantoms, which targets it meets and misses, and what it must not be used for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from model.card import seed_ranges

__all__ = ["LIMITATIONS", "TABLE_COLUMNS", "render_markdown"]

# (key of the table means, column header, format)
TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("psnr_db", "PSNR dB", "{:.2f}"),
    ("ssim", "SSIM", "{:.4f}"),
    ("liver_cov_ratio", "liver CoV ratio", "{:.2f}"),
    ("lesion_max_bias_pct", "lesion SUVmax bias %", "{:+.1f}"),
    ("lesion_mean_bias_pct", "lesion SUVmean bias %", "{:+.1f}"),
    ("liver_bias_pct", "liver bias %", "{:+.2f}"),
)

LIMITATIONS = (
    "Trained and evaluated on simulated PET only (digital phantoms and a simulated scanner); "
    "how it behaves on patient data from real scanners is not established.",
    "Research use only. Not a medical device; not for diagnosis or treatment decisions.",
    "Denoising can bias quantitation, most of all the SUVmax of small lesions at high DRFs "
    "(see the evaluation tables); the derived series says it was made by this network.",
)


def _obj(value: object) -> Mapping[str, object]:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def _number(value: object) -> float | None:
    """``value`` as a float if it is a number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _cell(value: object, fmt: str = "{:.4g}") -> str:
    """A table cell: numbers formatted, null as n/a, pipes escaped."""
    number = _number(value)
    if number is not None:
        return "inf" if math.isinf(number) else fmt.format(number)
    if value is None:
        return "n/a"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    return str(value).replace("|", "\\|")


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Markdown table lines."""
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _seeds(value: object) -> str:
    """Seeds as ranges with their count, e.g. ``0-79 (80)``."""
    if not isinstance(value, list) or not value:
        return "n/a"
    return f"{', '.join(seed_ranges([int(s) for s in value]))} ({len(value)})"


def _drfs(value: object) -> str:
    """DRFs as ``4, 10, 20``."""
    if not isinstance(value, list):
        return "n/a"
    return ", ".join(f"{n:g}" for v in value if (n := _number(v)) is not None)


def _header(card: Mapping[str, object], weights_name: str) -> list[str]:
    """Title and identity of the weights."""
    return [
        f"# {card.get('name', 'UniPET')} {card.get('version')}",
        "",
        *_table(
            ["", ""],
            [
                ["version", f"`{card.get('version')}`"],
                ["weights", f"`{weights_name}`"],
                ["SHA-256", f"`{card.get('weights_sha256')}`"],
            ],
        ),
        "",
        "## Intended use",
        "",
        str(card.get("intended_use", "research use only; not for diagnosis")),
    ]


_RECIPE_KEYS = (
    "batch_size",
    "patch_size",
    "lr_generator",
    "lr_schedule",
    "style_lr_multiplier",
    "lesion_patch_fraction",
    "lesion_loss_weight",
    "style_weight",
    "adversarial_weight",
    "rals_threshold_suv2",
    "init_weights",
)


def _recipe_line(config: Mapping[str, object]) -> str:
    """The training settings a reader needs to judge the run (the JSON card has them all)."""
    parts = [f"{k} {config[k]}" for k in _RECIPE_KEYS if config.get(k) not in (None, "")]
    return "- Settings: " + (", ".join(parts) if parts else "n/a")


def _architecture(card: Mapping[str, object]) -> list[str]:
    """One paragraph on the network, from the card's ``architecture``."""
    arch = _obj(card.get("architecture"))
    widths = arch.get("widths")
    width_text = "/".join(str(w) for w in widths) if isinstance(widths, list) else "n/a"
    text = (
        f"A three-level 2.5D U-Net (widths {width_text} channels) that reads "
        f"{arch.get('context_slices')} neighbouring slices and predicts a residual on the "
        "centre slice, so an untrained network is the identity. "
    )
    if arch.get("variant") == "unipet":
        blocks = (
            "All its residual blocks (full, 1/2 and 1/4 resolution) are"
            if arch.get("modulate_full_resolution")
            else "Its coarse residual blocks (1/2 and 1/4 resolution) are"
        )
        text += (
            f"{blocks} modulated by {arch.get('code_dim')}-dimensional "
            f"style codes from a style encoder (width {arch.get('style_width')}, statistics "
            f"pooled over the {arch.get('style_pooling')}, input {arch.get('style_input')}, "
            f"demodulation {'on' if arch.get('demodulate') else 'off'}) that reads each "
            "input's noise texture, so one network serves every dose reduction without being "
            "told it. "
        )
    else:
        text += f"Variant {arch.get('variant')}: plain residual blocks, no style encoder. "
    parameters = _number(arch.get("parameters"))
    if parameters is not None:
        text += f"{parameters:,.0f} parameters. "
    for key in ("input", "output"):
        if arch.get(key):
            text += f"{key.capitalize()}: {arch[key]}. "
    return ["## Architecture", "", text.strip()]


def _data(card: Mapping[str, object]) -> list[str]:
    """The training data recipe and its seeds."""
    data = _obj(card.get("data"))
    lines = [
        "## Training data",
        "",
        f"- Simulated phantoms, size `{data.get('size')}`, tracer `{data.get('tracer')}`",
        f"- Training seeds: {_seeds(data.get('train_seeds'))}",
        f"- Training DRFs: {_drfs(data.get('training_drfs'))}",
    ]
    extras = data.get("extra_datasets")
    for extra in extras if isinstance(extras, list) else []:
        if isinstance(extra, Mapping):
            lines.append(
                f"- Also phantoms of size `{extra.get('size')}`, tracer `{extra.get('tracer')}`, "
                f"seeds {_seeds(extra.get('train_seeds'))} (same DRFs)"
            )
    command = data.get("build_command")
    if command:
        lines += ["", "Rebuild the dataset with:", "", "```", str(command), "```"]
    else:
        lines += ["- Rebuild command unknown: the dataset manifest was not at hand when packaged"]
    return lines


def _training(card: Mapping[str, object]) -> list[str]:
    """Iterations, wall time and hardware."""
    training, hardware = _obj(card.get("training")), _obj(card.get("hardware"))
    iterations = _obj(training.get("iterations"))
    seconds = _number(training.get("wall_seconds"))
    wall = f"{seconds / 3600:.2f} h ({seconds:.0f} s)" if seconds is not None else "n/a"
    return [
        "## Training",
        "",
        f"- Seed {training.get('seed')}; iterations: stage 1 (L1) {iterations.get('stage1')}, "
        f"stage 2 (L1 + style + adversarial) {iterations.get('stage2')}; "
        f"steps done {training.get('steps_done')}",
        _recipe_line(_obj(training.get("config"))),
        *(
            [f"- Started from the weights with SHA-256 `{training['init_weights_sha256']}`"]
            if training.get("init_weights_sha256")
            else []
        ),
        f"- Wall time {wall}",
        f"- Hardware: {hardware.get('device')} ({hardware.get('cpu')}), "
        f"{hardware.get('threads')} threads, torch {hardware.get('torch')}",
    ]


def _drf_table(key: str, rows: object, training_drfs: Sequence[float]) -> list[str]:
    """One DRF's evaluation table: a row per method."""
    drf = float(key)
    kind = "training DRF" if drf in training_drfs else "unseen DRF"
    body = []
    for row in rows if isinstance(rows, list) else []:
        fields = _obj(row)
        means = _obj(fields.get("means"))
        body.append(
            [str(fields.get("method"))] + [_cell(means.get(k), f) for k, _, f in TABLE_COLUMNS]
        )
    phantoms = _obj(rows[0]).get("n_phantoms") if isinstance(rows, list) and rows else 0
    head = ["method", *(h for _, h, _ in TABLE_COLUMNS)]
    return [f"### DRF {drf:g} ({kind}), {phantoms} test phantoms", "", *_table(head, body), ""]


def _evaluation(card: Mapping[str, object]) -> list[str]:
    """The evaluation tables, one per DRF."""
    evaluation = _obj(card.get("evaluation"))
    tables = _obj(evaluation.get("tables"))
    training = evaluation.get("training_drfs")
    seen = [float(d) for d in training] if isinstance(training, list) else []
    lines = [
        "## Evaluation",
        "",
        f"Held-out test phantoms, size `{evaluation.get('size')}`, seeds "
        f"{_seeds(evaluation.get('test_seeds'))}. {evaluation.get('reference', '')}",
        "",
    ]
    for key in sorted(tables, key=float):
        lines += _drf_table(key, tables[key], seen)
    return lines


def _targets(card: Mapping[str, object]) -> list[str]:
    """Target checks with PASS/MISS."""
    targets = card.get("targets")
    checks = [_obj(c) for c in targets] if isinstance(targets, list) else []
    if not checks:
        return ["## Targets", "", "No target could be checked: the methods it needs are absent."]
    rows = [
        [
            _cell(c.get("check")),
            "all" if c.get("drf") is None else _cell(c.get("drf"), "{:g}"),
            _cell(c.get("value"), "{:.3f}"),
            _cell(c.get("threshold"), "{:.3f}"),
            "PASS" if c.get("passed") else "MISS",
        ]
        for c in checks
    ]
    met = sum(1 for c in checks if c.get("passed"))
    return [
        "## Targets",
        "",
        f"{met} of {len(checks)} checks met.",
        "",
        *_table(["check (UniPET)", "DRF", "value", "threshold", "result"], rows),
    ]


def _flat(value: object, prefix: str = "") -> list[list[str]]:
    """Rows ``[dotted key, value]`` of a nested JSON object, for verbatim extras."""
    if isinstance(value, Mapping):
        items = [(f"{prefix}.{k}" if prefix else str(k), v) for k, v in value.items()]
    elif isinstance(value, list) and any(isinstance(v, Mapping | list) for v in value):
        items = [(f"{prefix}[{i}]", v) for i, v in enumerate(value)]
    else:
        return [[f"`{prefix}`", _cell(value)]]
    return [row for key, item in items for row in _flat(item, key)]


def _drf_accuracy(accuracy: Mapping[str, object]) -> list[str]:
    """The estimate's accuracy on the test phantoms: one row per true DRF, then overall."""
    per_drf = accuracy.get("per_drf")
    rows = [
        [
            _cell(row.get("drf"), "{:g}"),
            "yes" if row.get("training") else "no",
            _cell(row.get("n"), "{:.0f}"),
            _cell(row.get("median_estimate"), "{:.1f}"),
            _cell(row.get("median_factor_error"), "{:.2f}"),
            _cell(row.get("fraction_within_band"), "{:.0%}"),
        ]
        for row in (per_drf if isinstance(per_drf, list) else [])
        if isinstance(row, Mapping)
    ]
    head = ["true DRF", "training DRF", "n", "median estimate", "median factor error"]
    lines = [*_table([*head, "within x1.5"], rows), ""] if rows else []
    overall = _obj(accuracy.get("overall"))
    if overall:
        lines += [
            f"Overall: median factor error {_cell(overall.get('median_factor_error'), '{:.2f}')}"
            f" over {_cell(overall.get('n'), '{:.0f}')} test volumes, "
            f"{_cell(overall.get('fraction_within_band'), '{:.0%}')} within a factor 1.5.",
            "",
        ]
    return lines


def _extras(card: Mapping[str, object]) -> list[str]:
    """DRF estimate calibration and accuracy, and the benchmark, when the card has them."""
    lines: list[str] = []
    calibration = _obj(card.get("drf_calibration"))
    accuracy = card.get("drf_estimate_accuracy")
    if calibration or accuracy is not None:
        lines += ["## DRF estimate", ""]
    if calibration:
        lines += [
            f"Noise-statistic estimate calibrated on {calibration.get('n_volumes')} training "
            "volumes; leave-one-phantom-out median factor error "
            f"{_cell(calibration.get('loo_median_factor_error'), '{:.2f}')}.",
            "",
        ]
    if isinstance(accuracy, Mapping):
        lines += _drf_accuracy(accuracy)
    benchmark = card.get("benchmark")
    if benchmark is not None:
        lines += ["## Benchmark", "", *_table(["figure", "value"], _flat(benchmark)), ""]
    return lines


def render_markdown(card: Mapping[str, object], weights_name: str) -> str:
    """The markdown model card of a packaged card (``model.card.package_card``)."""
    sections = [
        _header(card, weights_name),
        _architecture(card),
        _data(card),
        _training(card),
        _evaluation(card),
        _targets(card),
        _extras(card),
        ["## Limitations", "", *(f"- {line}" for line in LIMITATIONS)],
    ]
    return "\n\n".join("\n".join(section).strip() for section in sections if section) + "\n"
