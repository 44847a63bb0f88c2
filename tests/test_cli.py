"""The ``unipet-node`` command line as users run it: a real subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
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


def test_a_worker_s_openmp_threads_sleep_while_waiting_unless_the_administrator_chose() -> None:
    """The policy must be in the environment before torch loads libgomp, which reads it once:
    the command line imports no torch before the worker sets it."""
    script = (
        "import os, sys\n"
        "import service.cli as cli\n"
        "assert 'torch' not in sys.modules, 'torch loaded before the worker could choose'\n"
        "cli._openmp_threads_sleep_while_waiting()\n"
        "print(os.environ['OMP_WAIT_POLICY'])\n"
    )
    for preset, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        if preset is not None:
            env["OMP_WAIT_POLICY"] = preset
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env,
            timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == expected
