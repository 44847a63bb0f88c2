"""Bounded waits and the node's version, as the parts of the node use them."""

from __future__ import annotations

from importlib.metadata import version

from service.dicom.provenance import node_version
from service.runtime import wait_until


def test_wait_until_returns_as_soon_as_the_predicate_holds() -> None:
    calls: list[int] = []

    def third_time() -> bool:
        calls.append(1)
        return len(calls) >= 3

    assert wait_until(third_time, timeout_s=30.0, interval_s=0.01) is True
    assert len(calls) == 3


def test_wait_until_gives_up_with_false_after_its_timeout() -> None:
    calls: list[int] = []

    def never() -> bool:
        calls.append(1)
        return False

    assert wait_until(never, timeout_s=0.2, interval_s=0.05) is False
    assert 2 <= len(calls) <= 10


def test_node_version_is_the_installed_distribution_version() -> None:
    assert node_version() == version("unipet-node")
