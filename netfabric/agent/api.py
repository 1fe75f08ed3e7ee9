"""The local API's dispatch: a request body checked against its verb's argument Struct
(:mod:`netfabric.api.verbs`), then the core's method of the same name.

The core only ever sees well-typed arguments and a bad request is one clear
InvalidArgument. Plain coroutines over a core, testable without a socket.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from netfabric.agent.server import Request
from netfabric.api.types import to_wire
from netfabric.api.verbs import VERBS
from netfabric.errors import InUse, IPAMError, NotFound

if TYPE_CHECKING:
    from netfabric.agent.core import AgentCore

__all__ = ["VERBS", "dispatch"]


async def dispatch(core: AgentCore, request: Request) -> Any:
    """Run one verb on the core and return its result as plain JSON data."""
    verb = VERBS.get(request.verb)
    if verb is None:
        raise NotFound(f"unknown API verb {request.verb!r}")
    args = verb.parse_args(request.args)
    try:
        return to_wire(await getattr(core, verb.name)(**args))
    except (IPAMError, InUse) as exc:  # the IPAM speaks IDs; a user reads names
        named = core.name_ids(str(exc))
        if named == str(exc):
            raise
        raise type(exc)(named) from exc
