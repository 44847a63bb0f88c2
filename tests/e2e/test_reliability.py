"""What an administrator breaks from outside: long PACS outages, a PACS that rejects us for
good, a pause in the middle of a series without NumberOfSlices."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import PositronEmissionTomographyImageStorage  # type: ignore[attr-defined]  # generated at import
from support import DcmtkPacs, NodeFactory, free_port
from test_pipeline import series_uid_of, storescu, wait_state

from service.pipeline.states import SeriesState
from service.pipeline.store import StateStore

S = SeriesState
#: The denoiser does not matter here; the Gaussian backend keeps these tests quick.
FAST = {"backend": "gaussian"}


def test_send_retries_go_past_celerys_own_limit_then_dead(
    node_factory: NodeFactory, study_copy: Path
) -> None:
    # Nothing listens on the destination port: every send attempt fails.
    _node, settings = node_factory(
        free_port(),
        model=FAST,
        queue={"send_max_retries": 5, "retry_backoff_s": 0.1, "retry_backoff_max_s": 0.2},
    )
    folder = study_copy / "drf20"
    uid = series_uid_of(folder)
    state = StateStore(settings.database_url)
    assert storescu(folder, settings.listener.port).returncode == 0
    assert wait_state(state, uid, {S.DEAD, S.DONE}, 120) is S.DEAD
    dead = state.get(uid)
    assert "send attempt 6 failed" in dead.last_error
    assert "retries spent" in dead.state_reason


@pytest.fixture
def rejecting_pacs() -> Iterator[int]:
    """A PACS that does not know our AE title: A-ASSOCIATE-RJ, rejected permanently."""
    ae = AE(ae_title="STRICTPACS")
    ae.require_calling_aet = ["SOMEONEELSE"]
    ae.add_supported_context(PositronEmissionTomographyImageStorage)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False)
    assert server is not None
    yield port
    server.shutdown()


def test_permanent_association_reject_goes_dead_at_once_with_its_reason(
    node_factory: NodeFactory, rejecting_pacs: int, study_copy: Path
) -> None:
    _node, settings = node_factory(rejecting_pacs, model=FAST)
    folder = study_copy / "drf20"
    uid = series_uid_of(folder)
    state = StateStore(settings.database_url)
    assert storescu(folder, settings.listener.port).returncode == 0
    assert wait_state(state, uid, {S.DEAD, S.DONE}, 90) is S.DEAD
    dead = state.get(uid)
    assert "send attempt 1 failed" in dead.last_error
    assert "Rejected Permanent" in dead.last_error
    assert "Calling AE title not recognised" in dead.last_error
    assert "not retryable" in dead.state_reason


def test_late_instances_after_done_replace_the_output_with_the_whole_series(
    node_factory: NodeFactory, pacs: DcmtkPacs, study_copy: Path
) -> None:
    _node, settings = node_factory(pacs.port, model=FAST, completeness={"quiet_period_s": 1.0})
    folder = study_copy / "drf20"
    paths = sorted(folder.glob("*.dcm"))
    for path in paths:  # a scanner that does not say how many slices to expect
        ds = dcmread(path)
        del ds.NumberOfSlices
        ds.save_as(path)
    early, late = study_copy / "early", study_copy / "late"
    early.mkdir()
    late.mkdir()
    for index, path in enumerate(paths):
        path.rename((early if index < 25 else late) / path.name)
    uid = series_uid_of(early)
    state = StateStore(settings.database_url)
    assert storescu(early, settings.listener.port).returncode == 0
    assert wait_state(state, uid, {S.DONE, S.DEAD}, 90) is S.DONE
    assert state.get(uid).output_instances == 25
    assert storescu(late, settings.listener.port).returncode == 0
    assert wait_state(state, uid, {S.RECEIVING}, 10) in {S.RECEIVING, S.COMPLETE, S.QUEUED}
    assert wait_state(state, uid, {S.DONE, S.DEAD}, 90) is S.DONE
    whole = state.get(uid)
    assert whole.output_instances == len(paths)
    # The derived PET images (the quality report instances are series of their own).
    output = [
        ds
        for ds in (dcmread(p, stop_before_pixels=True) for p in pacs.files())
        if ds.SOPClassUID == PositronEmissionTomographyImageStorage
    ]
    assert {str(ds.SeriesInstanceUID) for ds in output} == {whole.output_series_uid}
    assert len({str(ds.SOPInstanceUID) for ds in output}) == len(paths)
