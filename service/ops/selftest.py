"""``unipet-node selftest``: a live synthetic study through the running node.

Checks what an administrator needs to trust the node right now: the listener answers C-ECHO,
accepts a small simulated PET series, the worker denoises it and the derived series reaches
every destination. The synthetic patient is named SIMULATED^PHANTOM so it is recognisable at
the destination PACS (like a daily QC phantom).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pynetdicom import AE

from service.config import NodeSettings, PeerSettings, SenderSettings
from service.dicom.network import connect_host
from service.dicom.sender import send_files
from service.dicom.synthetic import write_simulated_study
from service.errors import NodeError
from service.pipeline.inference import simulate_study
from service.pipeline.listener import VERIFICATION_SOP_CLASS
from service.pipeline.states import SeriesState
from service.pipeline.store import StateStore
from service.runtime import wait_until

SELFTEST_AE_TITLE = "UNIPETSELFTEST"


@dataclass(frozen=True)
class SelftestResult:
    """Outcome and a one-paragraph summary."""

    passed: bool
    summary: str


def _echo(settings: NodeSettings) -> bool:
    ae = AE(ae_title=SELFTEST_AE_TITLE)
    ae.add_requested_context(VERIFICATION_SOP_CLASS)
    host = connect_host(settings.listener.bind_address)
    assoc = ae.associate(host, settings.listener.port, ae_title=settings.listener.ae_title)
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return bool(status) and int(status.Status) == 0


def run_selftest(settings: NodeSettings, timeout_s: float) -> SelftestResult:
    """Echo, send a tiny synthetic series, wait (bounded) for DONE."""
    if not _echo(settings):
        return SelftestResult(False, f"C-ECHO to {settings.listener.ae_title} failed")
    with tempfile.TemporaryDirectory(prefix="unipet-selftest-") as tmp:
        study = simulate_study(seed=int(time.time()) % 100000, drfs=[20.0], size="tiny")
        written = write_simulated_study(study, Path(tmp))
        paths = written["drf20"]
        series_uid = str(dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)
        host = connect_host(settings.listener.bind_address)
        started = time.monotonic()
        try:
            send_files(
                paths,
                PeerSettings(
                    ae_title=settings.listener.ae_title, host=host, port=settings.listener.port
                ),
                SenderSettings(ae_title=SELFTEST_AE_TITLE),
            )
        except NodeError as exc:
            return SelftestResult(False, f"sending the synthetic series failed: {exc}")
    state = StateStore(settings.database_url)

    def finished() -> bool:
        try:
            return state.get(series_uid).state in {SeriesState.DONE, SeriesState.DEAD}
        except NodeError:
            return False

    wait_until(finished, timeout_s, interval_s=0.5)
    series = state.get(series_uid)
    elapsed = time.monotonic() - started
    if series.state is SeriesState.DONE:
        return SelftestResult(
            True,
            f"selftest passed in {elapsed:.1f} s: series {series_uid} "
            f"-> {series.output_series_uid} ({series.algorithm})",
        )
    return SelftestResult(
        False,
        f"selftest failed after {elapsed:.1f} s: series {series_uid} is "
        f"{series.state.value}: {series.last_error or series.state_reason}",
    )
