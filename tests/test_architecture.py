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
