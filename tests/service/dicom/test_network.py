"""Where the node's own tools connect to reach one of its servers."""

from __future__ import annotations

import pytest

from service.dicom.network import connect_host


@pytest.mark.parametrize("wildcard", ["", "0.0.0.0", "::"])
def test_a_wildcard_bind_is_reached_on_loopback(wildcard: str) -> None:
    assert connect_host(wildcard) == "127.0.0.1"


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "listener", "::1"])
def test_a_named_bind_address_is_used_as_it_is(address: str) -> None:
    assert connect_host(address) == address
