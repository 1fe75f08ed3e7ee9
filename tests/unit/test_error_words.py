"""Errors say what happened in words, never as a Python repr (issue 20)."""

from __future__ import annotations

import errno

from netfabric.agent.rpc import os_reason


def test_os_errors_are_words() -> None:
    # asyncio's sock_connect: OSError(errno, "Connect call failed ('198.51.100.9', 2377)")
    refused = OSError(errno.ECONNREFUSED, "Connect call failed ('198.51.100.9', 2377)")
    assert os_reason(refused) == "Connection refused"
    in_use = OSError(errno.EADDRINUSE, "error while attempting to bind on address "
                     "('198.51.100.1', 2377): address already in use")
    assert os_reason(in_use) == "Address already in use"
    assert os_reason(OSError("no errno at all")) == "no errno at all"
    assert os_reason(OSError()) == "OSError"
    assert os_reason(OSError(None, "plain words")) == "plain words"
