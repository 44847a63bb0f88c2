"""The human model card: markdown rendered from the typed card (``model.card.schema``).

The JSON card is what tools read; this page is what a reader checks before trusting the
weights: their identity (version, SHA-256), what the network is and was trained on, how it
did on held-out phantoms, which targets it meets and misses, and what it must not be used for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from model.card._json import JsonValue
from model.card.packaging import seed_ranges
from model.card.ranges import TrainedRanges
from model.card.results import DrfAccuracy, Evaluation, MethodMeans
from model.card.schema import Architecture, ModelCard, TrainingData, TrainingRecord
from model.drf_estimate import DrfCalibration
from model.evaluation.drf_accuracy import spread_sentence
from model.evaluation.full_dose import full_dose_markdown
from model.evaluation.groups import group_markdown
from model.evaluation.lesion_tables import grid_lines, lesion_markdown
from model.evaluation.seeds import seed_spread, seed_spread_markdown
from model.evaluation.targets import targets_markdown
from model.networks import Variant

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


def _number(value: float | None, fmt: str) -> str:
    """A figure formatted, ``inf`` for an infinite one, ``n/a`` for null."""
    if value is None:
        return "n/a"
    return "inf" if math.isinf(value) else fmt.format(value)


def _text(value: str) -> str:
    """A text table cell, pipes escaped."""
    return value.replace("|", "\\|")


def _json_cell(value: JsonValue) -> str:
    """A cell of a verbatim JSON value (the benchmark's figures)."""
    match value:
        case None:
            return "n/a"
        case bool():
            return str(value)
        case int() | float():
            return _number(float(value), "{:.4g}")
        case list():
            return ", ".join(_json_cell(v) for v in value)
        case _:
            return _text(str(value))


def _seeds(seeds: Sequence[int] | None) -> str:
    """Seeds as ranges with their count, e.g. ``0-79 (80)``."""
    if not seeds:
        return "n/a"
    return f"{', '.join(seed_ranges(seeds))} ({len(seeds)})"


def _drfs(drfs: Sequence[float]) -> str:
    """DRFs as ``4, 10, 20``."""
    return ", ".join(f"{d:g}" for d in drfs)


def _header(card: ModelCard, weights_name: str) -> list[str]:
    """Title and identity of the weights."""
    return [
        f"# {card.name} {card.version}",
        "",
        *grid_lines(
            ["", ""],
            [
                ["version", f"`{card.version}`"],
                ["weights", f"`{weights_name}`"],
                ["SHA-256", f"`{card.weights_sha256}`"],
            ],
        ),
        "",
        "## Intended use",
        "",
        card.intended_use,
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


def _recipe_line(card: ModelCard) -> str:
    """The training settings a reader needs to judge the run (the JSON card has them all)."""
    config = card.training.config
    values = [(k, getattr(config, k)) for k in _RECIPE_KEYS]
    parts = [f"{k} {v}" for k, v in values if v != ""]
    return "- Settings: " + ", ".join(parts)


def _architecture(arch: Architecture) -> list[str]:
    """One paragraph on the network."""
    net = arch.network
    text = (
        f"A three-level 2.5D U-Net (widths {'/'.join(str(w) for w in net.widths)} channels) "
        f"that reads {net.context_slices} neighbouring slices and predicts a residual on the "
        "centre slice, so an untrained network is the identity. "
    )
    if net.variant is Variant.UNIPET:
        blocks = (
            "All its residual blocks (full, 1/2 and 1/4 resolution) are"
            if net.modulate_full_resolution
            else "Its coarse residual blocks (1/2 and 1/4 resolution) are"
        )
        text += (
            f"{blocks} modulated by {net.code_dim}-dimensional "
            f"style codes from a style encoder (width {net.style_width}, statistics "
            f"pooled over the {net.style_pooling.value}, input {net.style_input.value}, "
            f"demodulation {'on' if net.demodulate else 'off'}) that reads each "
            "input's noise texture, so one network serves every dose reduction without being "
            "told it. "
        )
    else:
        text += f"Variant {net.variant.value}: plain residual blocks, no style encoder. "
    text += f"{arch.parameters:,.0f} parameters. "
    for key, note in (("Input", arch.input), ("Output", arch.output)):
        if note:
            text += f"{key}: {note}. "
    return ["## Architecture", "", text.strip()]


def _ranges_line(ranges: TrainedRanges) -> str:
    """The stated trained ranges, e.g. ``DRF 4 to 100; pixel 3.6 to 5 mm``."""
    parts = [
        f"{name} {span[0]:g} to {span[1]:g}{unit}"
        for name, span, unit in (
            ("DRF", ranges.drf, ""),
            ("pixel", ranges.pixel_mm, " mm"),
            ("slice spacing", ranges.slice_mm, " mm"),
        )
        if span is not None
    ]
    return (
        f"- Trained ranges: {'; '.join(parts) or 'none stated'} "
        "(the node marks a series outside them in its derived series)"
    )


def _data(data: TrainingData) -> list[str]:
    """The training data recipe and its seeds."""
    lines = [
        "## Training data",
        "",
        f"- Simulated phantoms, size `{data.size}`, tracer `{data.tracer}`",
        f"- Training seeds: {_seeds(data.train_seeds)}",
        f"- Training DRFs: {_drfs(data.training_drfs)}",
    ]
    for extra in data.extra_datasets:
        lines.append(
            f"- Also phantoms of size `{extra.size}`, tracer `{extra.tracer}`, "
            f"seeds {_seeds(extra.train_seeds)} (same DRFs)"
        )
    if data.trained_ranges is not None:
        lines.append(_ranges_line(data.trained_ranges))
    if data.build_command:
        lines += ["", "Rebuild the dataset with:", "", "```", data.build_command, "```"]
    else:
        lines += ["- Rebuild command unknown: the dataset manifest was not at hand when packaged"]
    return lines


def _training(card: ModelCard) -> list[str]:
    """Iterations, wall time and hardware."""
    training, hardware = card.training, card.hardware
    seconds = training.wall_seconds
    return [
        "## Training",
        "",
        f"- Seed {training.seed}; iterations: stage 1 (L1) {training.iterations.stage1}, "
        f"stage 2 (L1 + style + adversarial) {training.iterations.stage2}; "
        f"steps done {training.steps_done}",
        _recipe_line(card),
        *(
            [f"- Started from the weights with SHA-256 `{training.init_weights_sha256}`"]
            if training.init_weights_sha256
            else []
        ),
        f"- Wall time {seconds / 3600:.2f} h ({seconds:.0f} s)",
        f"- Hardware: {hardware.device} ({hardware.cpu}), "
        f"{hardware.threads} threads, torch {hardware.torch}",
        *_segments(training),
        *_earlier_stages(training),
    ]


def _segments(training: TrainingRecord) -> list[str]:
    """Where the run's own steps ran, when it ran on more than one machine or resumed."""
    if len(training.segments) < 2:
        return []
    parts = "; ".join(
        f"steps {s.first_step}-{s.last_step} on {s.device} ({s.threads} threads, torch "
        f"{s.torch}), {s.wall_seconds / 3600:.2f} h"
        for s in training.segments
    )
    return [f"- Segments, oldest first: {parts}"]


def _earlier_stages(training: TrainingRecord) -> list[str]:
    """The runs the weights were fine-tuned from, and the total over every stage."""
    if not training.earlier_stages:
        return []
    stages = "; ".join(
        f"`{s.weights_sha256[:12]}` {s.steps_done} steps, {s.wall_seconds / 3600:.2f} h "
        f"({s.device}, {s.threads} threads)"
        for s in training.earlier_stages
    )
    total = training.total_seconds
    return [
        f"- Earlier stages, oldest first: {stages}",
        f"- All stages together: {training.total_steps} steps, {total / 3600:.2f} h",
    ]


def _drf_table(key: str, rows: Sequence[MethodMeans], training_drfs: Sequence[float]) -> list[str]:
    """One DRF's evaluation table: a row per method."""
    drf = float(key)
    kind = "training DRF" if drf in training_drfs else "unseen DRF"
    body = [
        [row.method] + [_number(row.means.get(k), f) for k, _, f in TABLE_COLUMNS] for row in rows
    ]
    phantoms = rows[0].n_phantoms if rows else 0
    head = ["method", *(h for _, h, _ in TABLE_COLUMNS)]
    return [f"### DRF {drf:g} ({kind}), {phantoms} test phantoms", "", *grid_lines(head, body), ""]


def _evaluation(evaluation: Evaluation | None) -> list[str]:
    """The evaluation tables, one per DRF; lesion, scanner and full-dose tables when measured."""
    if evaluation is None:
        return ["## Evaluation", "", "Not evaluated: the card was not packaged."]
    lines = [
        "## Evaluation",
        "",
        f"Held-out test phantoms, size `{evaluation.size}`, seeds "
        f"{_seeds(evaluation.test_seeds)}. {evaluation.reference}",
        "",
    ]
    keys = sorted(evaluation.tables, key=float)
    for key in keys:
        lines += _drf_table(key, evaluation.tables[key], evaluation.training_drfs)
    lines += lesion_markdown({float(key): evaluation.tables[key] for key in keys})
    lines += group_markdown(evaluation.groups or {})
    if evaluation.full_dose_input is not None:
        lines += [*full_dose_markdown(evaluation.full_dose_input), ""]
    if evaluation.seed_methods:
        lines += seed_spread_markdown(
            seed_spread(evaluation.tables_json(), evaluation.seed_methods)
        )
    return lines


def _flat(value: JsonValue, prefix: str = "") -> list[list[str]]:
    """Rows ``[dotted key, value]`` of a verbatim JSON object (the benchmark's figures)."""
    items: list[tuple[str, JsonValue]]
    if isinstance(value, dict):
        items = [(f"{prefix}.{k}" if prefix else k, v) for k, v in value.items()]
    elif isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        items = [(f"{prefix}[{i}]", v) for i, v in enumerate(value)]
    else:
        return [[f"`{prefix}`", _json_cell(value)]]
    return [row for key, item in items for row in _flat(item, key)]


def _drf_accuracy(accuracy: DrfAccuracy) -> list[str]:
    """The estimate's accuracy on the test phantoms: one row per true DRF, then overall."""
    rows = [
        [
            f"{row.drf:g}",
            "yes" if row.training else "no",
            f"{row.n:.0f}",
            _number(row.median_estimate, "{:.1f}"),
            _number(row.median_factor_error, "{:.2f}"),
            _number(row.fraction_within_band, "{:.0%}"),
        ]
        for row in accuracy.per_drf
    ]
    head = ["true DRF", "training DRF", "n", "median estimate", "median factor error"]
    lines = [*grid_lines([*head, "within x1.5"], rows), ""] if rows else []
    overall = accuracy.overall
    summary = (
        f"Overall: median factor error {_number(overall.median_factor_error, '{:.2f}')}"
        f" over {overall.n:.0f} test volumes, "
        f"{_number(overall.fraction_within_band, '{:.0%}')} within a factor 1.5."
    )
    floor = accuracy.patient_spread
    spread = [] if floor is None else ["", spread_sentence(floor)]
    return [*lines, summary, *spread, ""]


def _calibration(calibration: DrfCalibration) -> list[str]:
    """How the DRF estimate was calibrated and what it reads."""
    reads = ["the image's noise"]
    if calibration.needs_spacing:
        reads.append("the voxel size")
    if calibration.needs_weight:
        reads.append("the patient weight from the headers")
    return [
        f"Noise-statistic estimate calibrated on {calibration.n_volumes} training "
        f"volumes; it reads {', '.join(reads)}. Leave-one-phantom-out median factor error "
        f"{_number(calibration.loo_median_factor_error, '{:.2f}')}.",
        "",
    ]


def _extras(card: ModelCard) -> list[str]:
    """DRF estimate calibration and accuracy, and the benchmark, when the card has them."""
    lines: list[str] = []
    calibration, accuracy = card.drf_calibration, card.drf_estimate_accuracy
    if calibration is not None or accuracy is not None:
        lines += ["## DRF estimate", ""]
    if calibration is not None:
        lines += _calibration(calibration)
    if accuracy is not None:
        lines += _drf_accuracy(accuracy)
    if card.benchmark is not None:
        lines += ["## Benchmark", "", *grid_lines(["figure", "value"], _flat(card.benchmark)), ""]
    return lines


def render_markdown(card: ModelCard, weights_name: str) -> str:
    """The markdown model card of a packaged card (``model.card.package_card``)."""
    sections = [
        _header(card, weights_name),
        _architecture(card.architecture),
        _data(card.data),
        _training(card),
        _evaluation(card.evaluation),
        targets_markdown(card.targets or ()),
        _extras(card),
        ["## Limitations", "", *(f"- {line}" for line in LIMITATIONS)],
    ]
    return "\n\n".join("\n".join(section).strip() for section in sections if section) + "\n"
