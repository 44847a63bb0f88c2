"""The ``unipet-node`` command line as users run it: a real subprocess."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from pydicom import dcmread


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["unipet-node", *args], capture_output=True, text=True, timeout=120, check=check
    )


#: The commands the README and docs/deployment.md document, exactly.
DOCUMENTED_COMMANDS = {
    "serve",
    "listener",
    "worker",
    "web",
    "simulate",
    "send",
    "demo",
    "status",
    "dead-letter",
    "selftest",
}

#: A row of the help's command panel: "│ name   description │" (continuation rows have no name).
COMMAND_ROW = re.compile(r"^\u2502 (?P<name>[a-z][a-z-]*) {2,}\S")


def listed_commands(help_text: str) -> set[str]:
    """Command names in the first column of the help's command panel (not in descriptions)."""
    return {m["name"] for m in map(COMMAND_ROW.match, help_text.splitlines()) if m}


def test_help_lists_exactly_the_documented_commands() -> None:
    assert listed_commands(run("--help").stdout) == DOCUMENTED_COMMANDS
    assert listed_commands(run("dead-letter", "--help").stdout) == {"list", "replay"}


def test_simulate_writes_full_and_each_drf_in_one_study(tmp_path: Path) -> None:
    run(
        "simulate",
        "--out",
        str(tmp_path),
        "--drf",
        "20",
        "--drf",
        "7.5",
        "--seed",
        "3",
        "--size",
        "tiny",
    )
    series = {name: sorted((tmp_path / name).glob("*.dcm")) for name in ("full", "drf20", "drf7.5")}
    assert all(series.values())
    heads = {name: dcmread(paths[0], stop_before_pixels=True) for name, paths in series.items()}
    assert len({h.StudyInstanceUID for h in heads.values()}) == 1
    assert len({h.SeriesInstanceUID for h in heads.values()}) == 3
    assert len({len(paths) for paths in series.values()}) == 1


def test_simulate_clinical_writes_a_clinical_profile_grid_and_refuses_unknown_sizes(
    tmp_path: Path,
) -> None:
    run("simulate", "--out", str(tmp_path), "--seed", "7", "--size", "clinical")
    head = dcmread(sorted((tmp_path / "drf20").glob("*.dcm"))[0], stop_before_pixels=True)
    pixel_mm = [float(v) for v in head.PixelSpacing]
    # a clinical profile's grid: the 1.65-4.7 mm pixels of UniPET 1.1's training data
    assert pixel_mm[0] == pixel_mm[1] and 1.6 <= pixel_mm[0] <= 4.7
    refused = run("simulate", "--out", str(tmp_path / "x"), "--size", "huge", check=False)
    assert refused.returncode == 2 and "clinical" in refused.stderr


def test_bad_config_names_the_key_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "node.yaml"
    config.write_text("listener:\n  port: -3\n")
    result = run("status", "--config", str(config), check=False)
    assert result.returncode == 2
    assert "listener.port" in result.stderr


def test_status_json_on_an_empty_node(tmp_path: Path) -> None:
    config = tmp_path / "node.yaml"
    config.write_text(f"spool:\n  path: {tmp_path / 'spool'}\n")
    report = json.loads(run("status", "--json", "--config", str(config)).stdout)
    assert report["series"] == []
    assert report["counts"]["DONE"] == 0


def test_replay_of_a_series_that_is_not_dead_fails_clearly(tmp_path: Path) -> None:
    config = tmp_path / "node.yaml"
    config.write_text(f"spool:\n  path: {tmp_path / 'spool'}\n")
    result = run("dead-letter", "replay", "1.2.3", "--config", str(config), check=False)
    assert result.returncode == 1
    assert "no series 1.2.3" in result.stderr
