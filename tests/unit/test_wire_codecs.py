"""The typed codecs of gossip values and the join request: round trips, and errors that name
the field."""

from __future__ import annotations

import msgspec
import pytest

from netfabric.agent.handshake import JoinOffer
from netfabric.agent.mesh import decode_endpoint, encode_endpoint
from netfabric.errors import InvalidArgument
from netfabric.model import Endpoint

EP = Endpoint(id="e1", network_id="n1", sandbox="s1", node_id="node1",
              mac="02:00:00:00:00:01", ipv4="10.0.0.2", prefixlen=24, vtep="198.51.100.1",
              aliases=("web", "w"))


def test_endpoint_entries_round_trip_by_name() -> None:
    raw = encode_endpoint(EP)
    assert decode_endpoint(raw) == EP
    assert msgspec.msgpack.decode(raw)["network_id"] == "n1"  # a map, not positions


@pytest.mark.parametrize(("value", "needle"), [
    (b"\x93", "Expected `object`"),
    ({"id": 1}, "$.id"),
    ({"id": "e", "network_id": "n", "sandbox": "s", "node_id": "x", "mac": "m",
      "aliases": "web"}, "$.aliases"),
    ([1, 2], "Expected `object`"),
])
def test_malformed_endpoint_entries_name_the_field(value: object, needle: str) -> None:
    raw = value if isinstance(value, bytes) else msgspec.msgpack.encode(value)
    with pytest.raises(InvalidArgument, match="malformed endpoint entry") as info:
        decode_endpoint(raw)
    assert needle in str(info.value)


def test_join_offer_round_trips_and_refuses_malformed() -> None:
    offer = JoinOffer(node_id="n2", hostname="node2", address="198.51.100.2",
                      gossip_port=7946, digest="d", nonce="x", proof="p")
    assert JoinOffer.from_wire(offer.to_wire()) == offer
    with pytest.raises(InvalidArgument, match=r"malformed join request.*\$\.gossip_port"):
        JoinOffer.from_wire({**offer.to_wire(), "gossip_port": "many"})
    with pytest.raises(InvalidArgument, match="malformed join request"):
        JoinOffer.from_wire(["n2"])
