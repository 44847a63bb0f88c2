"""Which quality-report files go with a series: per destination, from the report folder."""

from __future__ import annotations

from pathlib import Path

from service.config import DestinationSettings, load_settings
from service.dicom.report import report_dir
from service.pipeline.reporting import report_paths_for
from service.pipeline.spool import Spool


def _destination(send: bool) -> DestinationSettings:
    return DestinationSettings(
        name="pacs", ae_title="PACS", host="127.0.0.1", port=104, send_quality_report=send
    )


def test_report_instances_go_only_where_the_destination_wants_them(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    series_dir = spool.outgoing_dir("1.2.3", "ab" * 32)
    series_dir.mkdir(parents=True)
    reports = report_dir(series_dir)
    reports.mkdir()
    for name in ("1.2.4.dcm", "1.2.5.dcm", "report.pdf", "summary.json"):
        (reports / name).write_bytes(b"x")
    key = spool.key_of(series_dir)
    sent = report_paths_for(spool, key, _destination(True))
    assert [p.name for p in sent] == ["1.2.4.dcm", "1.2.5.dcm"]
    assert report_paths_for(spool, key, _destination(False)) == []


def test_no_report_folder_sends_the_series_alone(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    series_dir = spool.outgoing_dir("1.2.3", "cd" * 32)
    series_dir.mkdir(parents=True)
    assert report_paths_for(spool, spool.key_of(series_dir), _destination(True)) == []


def test_report_switches_are_configurable() -> None:
    settings = load_settings(
        output={"quality_report": False, "quality_change_limit_pct": 5.0},
        destinations=[
            {"name": "pacs", "ae_title": "PACS", "host": "h", "port": 104},
            {
                "name": "ris",
                "ae_title": "RIS",
                "host": "h",
                "port": 105,
                "send_quality_report": False,
            },
        ],
    )
    assert settings.output.quality_report is False
    assert settings.output.quality_change_limit_pct == 5.0
    assert [d.send_quality_report for d in settings.destinations] == [True, False]
