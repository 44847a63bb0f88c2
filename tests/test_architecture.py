"""Package boundaries (docs/architecture.md), checked on the source itself."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DICOM_OR_QUEUE = {"pydicom", "pynetdicom", "highdicom", "celery", "service"}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_model_knows_nothing_of_dicom_or_the_node() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & DICOM_OR_QUEUE)
        for path in (ROOT / "model").rglob("*.py")
        if imported_roots(path) & DICOM_OR_QUEUE
    }
    assert offenders == {}


def test_only_service_inference_imports_the_model() -> None:
    importers = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "service").rglob("*.py")
        if "model" in imported_roots(path)
    )
    assert importers == ["service/pipeline/inference.py"]


ARCHITECTURE = ROOT / "docs" / "architecture.md"


def test_architecture_doc_maps_every_module_of_the_node() -> None:
    text = ARCHITECTURE.read_text()
    modules = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "service").rglob("*.py")
        if path.name != "__init__.py"
    )
    assert [m for m in modules if f"`{m}`" not in text] == []


def test_architecture_doc_states_the_transitions_of_the_code() -> None:
    from service.pipeline.states import ALLOWED_TRANSITIONS, SeriesState

    documented: dict[str, set[str]] = {}
    for line in ARCHITECTURE.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 2 and cells[0] in SeriesState.__members__:
            documented[cells[0]] = {target.strip() for target in cells[1].split(",")}
    assert documented == {
        source.value: {target.value for target in targets}
        for source, targets in ALLOWED_TRANSITIONS.items()
    }
