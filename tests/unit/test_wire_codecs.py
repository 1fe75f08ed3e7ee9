"""The typed codecs of gossip values, the join request and the agent's state file: round
trips, files of the earlier codec, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from netfabric.agent.handshake import JoinOffer
from netfabric.agent.mesh import decode_endpoint, encode_endpoint
from netfabric.agent.rpc import (
    ALLOCATE,
    CLUSTER_VERBS,
    JOIN,
    LEASE_BLOCK,
    LEND_ADDRESS,
    NODE_CALLS,
    UNLEND_ADDRESS,
    LeaseBlockArgs,
    LendArgs,
)
from netfabric.agent.services import (
    decode_backend,
    decode_service,
    encode_backend,
    encode_service,
)
from netfabric.agent.state import STATE_FILE, LocalState
from netfabric.agent.tasks import (
    decode_spec,
    decode_state,
    decode_task,
    encode_spec,
    encode_state,
    encode_task,
)
from netfabric.api.types import Availability, Role, to_wire
from netfabric.api.wire import encode_json
from netfabric.errors import InvalidArgument, MalformedAnswer, StoreCorrupt
from netfabric.ipam.addr import IPFamily
from netfabric.ipam.pools import AddressSpace
from netfabric.ipam.values import BlockLease, Subnet
from netfabric.model import Driver, Endpoint, Network, Scope, SubnetSpec
from netfabric.services import Backend, EndpointMode, PortConfig, Proto, PublishMode, Service
from netfabric.services.tasks import Desired, RunSpec, State, Task, TaskState
from netfabric.store.base import decode_network, encode_network

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


# A state file as the hand-written codec before msgspec wrote it (json.dumps, sort_keys).
OLD_STATE = """{"cluster": {"cluster_id": "c1", "listen": "0.0.0.0:2377", "managers":
 ["198.51.100.1:2377"], "role": "manager", "role_secrets": {"worker": "w"}, "secret": "s"},
 "hostname": "node1", "networks": {"n1": {"attachable": true, "created": 5.0, "driver":
 "overlay", "id": "n1", "internal": false, "ipv6": false, "mtu": null, "name": "ov",
 "options": [["a", "b"]], "scope": "swarm", "subnets": [["10.0.0.0/24", "10.0.0.1", null]],
 "vni": 4097}}, "node_id": "x1", "nodes": {"x1": {"address": "198.51.100.1", "availability":
 "active", "gossip_port": 7946, "hostname": "node1", "id": "x1", "role": "manager"}},
 "pending_releases": [["n1", "10.0.0.9"]], "sandboxes": {}, "version": 1}"""


def test_an_existing_state_file_still_reads(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text(OLD_STATE)
    state = LocalState.load(str(tmp_path), hostname="")
    assert state.cluster is not None and state.cluster.role is Role.MANAGER
    assert state.networks["n1"].subnets == [("10.0.0.0/24", "10.0.0.1", None)]
    assert state.nodes["x1"].availability is Availability.ACTIVE
    assert state.pending_releases == [("n1", "10.0.0.9")]
    state.save(str(tmp_path))
    assert LocalState.load(str(tmp_path), hostname="") == state


def test_a_malformed_state_file_names_the_field(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text(OLD_STATE.replace('"gossip_port": 7946',
                                                         '"gossip_port": "x"'))
    with pytest.raises(StoreCorrupt, match=r"\$\.nodes\[\.\.\.\]\.gossip_port"):
        LocalState.load(str(tmp_path), hostname="")


def test_cluster_verbs_check_requests_and_answers() -> None:
    lease = BlockLease(network_id="n1", host_id="h2", block="10.0.0.64/26",
                       subnet=Subnet("n1", AddressSpace.GLOBAL, "10.0.0.0/24", "10.0.0.1"),
                       taken=("10.0.0.65",))
    assert LEASE_BLOCK.parse_result(to_wire(lease), peer="m") == lease
    assert encode_json(lease) == encode_json(lease.to_dict())  # the answer as before
    args = LEASE_BLOCK.parse({"network_id": "n1", "host_id": "h2", "family": 6})
    assert isinstance(args, LeaseBlockArgs) and args.family is IPFamily.V6
    with pytest.raises(InvalidArgument, match="allocate: missing argument 'node_id'"):
        ALLOCATE.parse({"network_id": "n1"})
    with pytest.raises(InvalidArgument, match="lease_block: argument 'family'"):
        LEASE_BLOCK.parse({"network_id": "n1", "host_id": "h2", "family": 5})
    with pytest.raises(MalformedAnswer, match=r"manager at x sent a malformed allocate answer"):
        ALLOCATE.parse_result({"ipv4": "10.0.0.2"}, peer="manager at x")
    with pytest.raises(MalformedAnswer, match=r"join answer.*\$\.nodes\[0\]\.gossip_port"):
        JOIN.parse_result({"sealed": "s", "role": "worker", "cluster_id": "c", "managers": [],
                           "nodes": [{"id": "x", "hostname": "h", "address": "a",
                                      "gossip_port": "p", "role": "worker"}]}, peer="m")
    assert set(CLUSTER_VERBS) == {"join", "get_network", "allocate", "release", "lease_block",
                                  "release_block", "leave"}


def test_node_calls_check_their_arguments() -> None:
    args = LEND_ADDRESS.parse({"network_id": "n1", "ip": "10.0.0.70"})
    assert isinstance(args, LendArgs) and args.ip == "10.0.0.70"
    with pytest.raises(InvalidArgument, match="unlend_address: missing argument 'ip'"):
        UNLEND_ADDRESS.parse({"network_id": "n1"})
    assert set(NODE_CALLS) == {"lend_address", "unlend_address", "become_manager",
                               "become_worker"}


def test_service_and_task_entries_keep_their_shape_and_name_the_field() -> None:
    svc = Service("web", ("n1",), EndpointMode.VIP, (("n1", "10.0.0.5"),),
                  (PortConfig(80, 8080, Proto.TCP, PublishMode.INGRESS),))
    raw = encode_service(svc)
    assert raw == (b'{"name":"web","networks":["n1"],"mode":"vip","vips":[["n1","10.0.0.5"]],'
                   b'"ports":[[80,8080,"tcp","ingress"]]}')  # the shape written before
    assert decode_service(raw) == svc
    with pytest.raises(InvalidArgument, match=r"malformed service entry.*\$\.ports\[0\]\[2\]"):
        decode_service(raw.replace(b'"tcp"', b'"sctp"'))
    with pytest.raises(InvalidArgument, match="malformed service entry: bad target port"):
        decode_service(raw.replace(b"[80,", b"[0,"))
    backend = Backend("web", "b1", "node1", (("n1", "10.0.0.9"),), active=False)
    assert decode_backend(encode_backend(backend)) == backend
    with pytest.raises(InvalidArgument, match=r"malformed backend entry.*\$\.active"):
        decode_backend(encode_backend(backend).replace(b"false", b'"no"'))
    task = Task("t1", "web", 1, "node1", ("sleep", "9"), Desired.RUNNING, 5.0)
    assert decode_task(encode_task(task)) == task
    with pytest.raises(InvalidArgument, match=r"malformed task entry.*\$\.slot"):
        decode_task(encode_task(task).replace(b'"slot":1', b'"slot":"1"'))
    state = TaskState("t1", State.RUNNING, 6.0)
    assert decode_state(encode_state(state)) == state
    spec = RunSpec("web", 2, ("sleep", "9"))
    assert decode_spec(encode_spec(spec)) == spec
    assert decode_spec(b'{"service":"web","replicas":2,"command":["x"]}') == \
        RunSpec("web", 2, ("x",))  # fields added later keep their defaults


def test_network_rows_keep_their_text_and_name_the_field() -> None:
    net = Network(id="n1", name="ov", driver=Driver.OVERLAY, scope=Scope.SWARM,
                  subnets=(SubnetSpec("10.0.0.0/24", "10.0.0.1"),), vni=4097,
                  options=(("mtu", "1400"),))
    text = encode_network(net)
    assert text.startswith('{"attachable":false,"created":0.0,"driver":"overlay","id":"n1"')
    assert decode_network(text) == net
    with pytest.raises(InvalidArgument, match=r"malformed network record.*\$\.vni"):
        decode_network(text.replace('"vni":4097', '"vni":"x"'))
