"""The ``unipet-node`` command line as users run it: a real subprocess."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from pydicom import dcmread


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["unipet-node", *args], capture_output=True, text=True, timeout=120, check=check
    )


def test_help_lists_the_documented_commands() -> None:
    out = run("--help").stdout
    for command in (
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
    ):
        assert command in out


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
