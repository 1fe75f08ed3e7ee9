"""The local API without a socket: request schemas, error encoding, HTTP framing, tokens."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from netfabric.agent import handshake
from netfabric.agent.api import VERBS, dispatch
from netfabric.agent.server import Request
from netfabric.agent.tokens import (
    cluster_digest,
    make_token,
    new_cluster_secret,
    new_role_secret,
    parse_token,
)
from netfabric.api.http import (
    ClientConnection,
    HttpError,
    HttpResponse,
    ServerConnection,
)
from netfabric.api.types import (
    Availability,
    ContainerInfo,
    EndpointInfo,
    NetworkInfo,
    NodeInfo,
    NodeStatus,
    Role,
    to_wire,
)
from netfabric.api.wire import (
    decode_json,
    encode_json,
    error_from_wire,
    error_to_wire,
    http_status,
    result_of,
)
from netfabric.errors import (
    InvalidArgument,
    InvalidToken,
    MalformedAnswer,
    NetfabricError,
    NotAManager,
    NotFound,
    PoolExhausted,
)


class _Recorder:
    """Stands in for AgentCore: records what dispatch passes through."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, verb: str) -> Any:
        async def method(**kwargs: Any) -> Any:
            self.calls.append((verb, kwargs))
            return {"ok": verb}
        return method


def _req(verb: str, args: dict[str, Any]) -> Request:
    return Request(verb=verb, args=args, body=b"", headers={}, peer="test")


def _dispatch(args: dict[str, Any], verb: str = "run") -> tuple[_Recorder, Any]:
    rec = _Recorder()
    result = asyncio.run(dispatch(rec, _req(verb, args)))  # type: ignore[arg-type]
    return rec, result


def test_dispatch_fills_defaults_and_passes_typed_arguments() -> None:
    rec, result = _dispatch({"name": "web1", "network": "ov", "aliases": ["a", "b"]})
    assert result == {"ok": "run"}
    assert rec.calls == [("run", {"name": "web1", "network": "ov", "aliases": ("a", "b"),
                                  "ip": None, "netns_path": None, "hostname": "",
                                  "labels": None})]


@pytest.mark.parametrize("args, message", [
    ({}, "missing argument 'name'"),
    ({"name": 3}, "wrong type"),
    ({"name": "x", "aliases": "a"}, "wrong type"),
    ({"name": "x", "aliases": [1]}, "list of strings"),
    ({"name": "x", "bogus": 1}, "unknown argument"),
])
def test_dispatch_refuses_bad_requests(args: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        _dispatch(args)


def test_dispatch_refuses_bools_for_strings_and_unknown_verbs() -> None:
    with pytest.raises(InvalidArgument):
        _dispatch({"name": True})
    with pytest.raises(NotFound, match="unknown API verb"):
        _dispatch({}, verb="format_disk")


def test_every_verb_is_a_client_method() -> None:
    from netfabric.client import Client

    client_verbs = {"run", "remove_container", "containers", "inspect_container", "connect",
                    "disconnect", "info", "init", "join", "join_token", "nodes",
                    "update_node", "remove_node", "promote_node", "demote_node", "leave",
                    "create_network", "remove_network",
                    "networks",
                    "inspect_network", "create_service", "remove_service", "services",
                    "inspect_service", "add_backend", "remove_backend", "scale_service",
                    "service_ps", "update_service", "doctor", "doctor_host"}
    assert set(VERBS) == client_verbs
    for verb in client_verbs - {"run"}:
        assert callable(getattr(Client, verb))


@pytest.mark.parametrize("exc, status", [
    (InvalidArgument("bad cidr"), 400), (NotFound("no net"), 404),
    (PoolExhausted("full"), 409), (NotAManager("worker"), 403),
    (NetfabricError("other"), 500),
])
def test_errors_round_trip_as_their_own_class(exc: NetfabricError, status: int) -> None:
    back = error_from_wire(error_to_wire(exc))
    assert type(back) is type(exc) and str(back) == str(exc)
    assert http_status(exc) == status


def test_unknown_or_malformed_error_kinds_become_the_base_class() -> None:
    assert type(error_from_wire({"error": {"kind": "os", "message": "x"}})) is NetfabricError
    assert type(error_from_wire({"error": {"kind": "Exception", "message": "x"}})) is \
        NetfabricError
    assert type(error_from_wire("garbage")) is NetfabricError


def _server(raw: bytes) -> ServerConnection:
    conn = ServerConnection()
    conn.receive(raw)
    return conn


def test_http_framing_round_trip_and_limits() -> None:
    raw = ClientConnection().request("POST", "/v1/info", encode_json({"a": 1}))
    parsed = _server(raw).next_request()
    assert parsed is not None
    assert (parsed.method, parsed.target) == ("POST", "/v1/info")
    assert decode_json(parsed.body) == {"a": 1}
    server = _server(raw)
    server.next_request()
    assert server.respond(HttpResponse(404)).startswith(b"HTTP/1.1 404 Not Found\r\n")
    with pytest.raises(InvalidArgument):
        _server(b"GARBAGE\r\n\r\n").next_request()
    with pytest.raises(InvalidArgument):
        _server(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n"
                ).next_request()
    with pytest.raises(InvalidArgument):
        decode_json(b"{not json")


def test_http_limits_and_malformed_answers() -> None:
    with pytest.raises(HttpError) as head:
        _server(b"POST / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000).next_request()
    assert head.value.status == 431
    with pytest.raises(HttpError) as body:
        _server(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n"
                ).next_request()
    assert body.value.status == 413
    client = ClientConnection(peer="agent at /x.sock")
    client.request("POST", "/v1/info")
    client.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}")
    assert client.next_response() is None
    client.receive(b"")
    with pytest.raises(MalformedAnswer, match=r"agent at /x\.sock sent .* peer closed"):
        client.next_response()
    client = ClientConnection(peer="agent at /x.sock")
    client.request("POST", "/v1/info")
    client.receive(b"SPDY/9 OK\r\n\r\n")
    with pytest.raises(MalformedAnswer, match="malformed HTTP answer"):
        client.next_response()


def test_answers_out_of_protocol_are_malformed_not_bad_arguments() -> None:
    assert result_of(200, b'{"result": [1]}', peer="p") == [1]
    for body in (b"{not json", b'{"no_result": 1}', b"[]"):
        with pytest.raises(MalformedAnswer, match="p sent a malformed answer"):
            result_of(200, body, peer="p")
    with pytest.raises(NotFound, match="no net"):
        result_of(404, encode_json(error_to_wire(NotFound("no net"))), peer="p")
    assert not issubclass(MalformedAnswer, InvalidArgument)


def test_typed_values_round_trip_and_refuse_malformed() -> None:
    ep = EndpointInfo(network="ov", network_id="n1", endpoint_id="e1", container="web",
                      node="node1", mac="02:00:00:00:00:01", ipv4="10.0.0.2",
                      aliases=("w",))
    net = NetworkInfo(id="n1", name="ov", driver="overlay", scope="swarm",
                      subnets=("10.0.0.0/24",), gateways=("10.0.0.1",), vni=4097,
                      options=(("mtu", "1400"),), endpoints=(ep,))
    con = ContainerInfo(id="c1", name="web", netns="nfx-c1", netns_path="/run/netns/nfx-c1",
                        node="node1", networks=(ep,))
    node = NodeInfo(id="x", hostname="node1", address="198.51.100.1", status=NodeStatus.READY,
                    availability=Availability.ACTIVE, role=Role.MANAGER, leader=True)
    assert NetworkInfo.from_wire(to_wire(net)) == net
    assert ContainerInfo.from_wire(to_wire(con)) == con
    assert NodeInfo.from_wire(to_wire(node)) == node
    assert node.manager_status == "Leader"
    with pytest.raises(InvalidArgument):
        NetworkInfo.from_wire({"id": "x"})
    with pytest.raises(InvalidArgument):
        NodeInfo.from_wire({**to_wire(node), "status": "Sleeping"})


def test_tokens_name_their_cluster_and_parse_strictly() -> None:
    secret, role = new_cluster_secret(), new_role_secret()
    token = make_token(secret, role)
    assert token.startswith("SWMTKN-1-")
    parsed = parse_token(token)
    assert parsed.digest == cluster_digest(secret) and parsed.secret == role
    for bad in ("", "SWMTKN-1-abc", token + "x", token.replace("SWMTKN-1", "SWMTKN-2"),
                token[:-1] + "!"):
        with pytest.raises(InvalidToken):
            parse_token(bad)


def _offer(token: str) -> handshake.JoinOffer:
    return handshake.make_offer(token, node_id="n2", hostname="node2",
                                address="198.51.100.2", gossip_port=7946)


def test_handshake_grants_the_role_and_delivers_the_secret() -> None:
    secret = new_cluster_secret()
    roles = {"worker": new_role_secret(), "manager": new_role_secret()}
    token = make_token(secret, roles["worker"])
    offer = handshake.JoinOffer.from_wire(_offer(token).to_wire())
    role, role_secret = handshake.accept_offer(offer, cluster_secret=secret,
                                               role_secrets=roles)
    assert role == "worker"
    sealed = handshake.seal_secret(secret, role_secret=role_secret, nonce=offer.nonce)
    assert secret not in sealed and roles["worker"] not in str(offer.to_wire())
    assert handshake.open_secret(sealed, token=token, nonce=offer.nonce) == secret


def test_handshake_refuses_wrong_forged_and_rotated_tokens() -> None:
    secret = new_cluster_secret()
    roles = {"worker": new_role_secret(), "manager": new_role_secret()}
    other_cluster = make_token(new_cluster_secret(), roles["worker"])
    forged = make_token(secret, new_role_secret())
    with pytest.raises(InvalidToken, match="not issued by this cluster"):
        handshake.accept_offer(_offer(other_cluster), cluster_secret=secret, role_secrets=roles)
    with pytest.raises(InvalidToken, match="forged or was rotated"):
        handshake.accept_offer(_offer(forged), cluster_secret=secret, role_secrets=roles)
    old = make_token(secret, roles["worker"])
    roles["worker"] = new_role_secret()
    with pytest.raises(InvalidToken, match="forged or was rotated"):
        handshake.accept_offer(_offer(old), cluster_secret=secret, role_secrets=roles)


def test_a_node_refuses_an_impostor_manager() -> None:
    secret, role = new_cluster_secret(), new_role_secret()
    token = make_token(secret, role)
    offer = _offer(token)
    impostor = handshake.seal_secret(new_cluster_secret(), role_secret=role, nonce=offer.nonce)
    with pytest.raises(InvalidToken, match="does not match the token"):
        handshake.open_secret(impostor, token=token, nonce=offer.nonce)
    with pytest.raises(InvalidToken, match="could not prove"):
        handshake.open_secret("00" * 40, token=token, nonce=offer.nonce)
