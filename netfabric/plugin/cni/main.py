"""``netfabric-cni``: the executable a CNI runtime runs (thin adapter over :mod:`.spec`).

VERSION is answered here importing nothing beyond :mod:`.version` (see there why not even
``json``). ADD, DEL, CHECK, STATUS and GC
go to the local agent's API socket as ``POST /v1/cni`` (the socket: the config's
``"socket"``, else ``$NETFABRIC_HOST``, else ``/run/netfabric/agent.sock``). The result
or the spec's error object is printed on stdout; errors exit 1.

DEL is idempotent: an agent that is not there, a netns or an endpoint already gone is
success (the agent drops what it still holds at its next start or at GC).
"""

from __future__ import annotations

import os
import sys

from netfabric.plugin.cni.version import CURRENT, VersionError, encode_answer, version_answer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Final

__all__ = ["DEFAULT_SOCKET", "call_agent", "main", "run"]

DEFAULT_SOCKET: Final = "/run/netfabric/agent.sock"
TIMEOUT: Final = 60.0


def _socket_path(conf_socket: str | None, env: Mapping[str, str]) -> str:
    host = conf_socket or env.get("NETFABRIC_HOST") or DEFAULT_SOCKET
    return host[len("unix://"):] if host.startswith("unix://") else host


def call_agent(path: str, body: dict[str, Any], *, timeout: float = TIMEOUT) -> Any:
    """One ``POST /v1/cni`` on the agent's unix socket; its result, or :class:`CniError`
    (code 11 when nothing answers)."""
    from netfabric.plugin.cni import fastjson, spec
    from netfabric.plugin.cni.spec import CniError

    payload = fastjson.dumps(body).encode()
    head = (f"POST /v1/cni HTTP/1.1\r\nHost: netfabric\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
    import _socket  # the C module: socket.py would import enum and selectors

    chunks: list[bytes] = []
    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(head + payload)
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        finally:
            sock.close()
    except OSError as exc:
        raise CniError(spec.ERR_TRY_LATER, f"the netfabric agent does not answer on {path} "
                       f"({exc.strerror or exc}): start it, then retry") from exc
    raw = b"".join(chunks)
    _, sep, data = raw.partition(b"\r\n\r\n")
    try:
        answer = fastjson.loads(data.decode()) if sep else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise CniError(spec.ERR_TRY_LATER, f"the netfabric agent on {path} sent no answer")
    if "error" in answer:
        err = answer["error"] if isinstance(answer["error"], dict) else {}
        kind = str(err.get("kind", "NetfabricError"))
        raise CniError(spec.code_for_kind(kind), str(err.get("message", "agent error")))
    res = answer.get("result")
    if isinstance(res, dict) and "cni_error" in res:
        e = res["cni_error"]
        raise CniError(int(e.get("code", 100)), str(e.get("msg", "agent error")),
                       str(e.get("details", "")))
    return res


def run(env: Mapping[str, str], stdin: bytes) -> tuple[int, dict[str, Any] | None]:
    """One plugin call: (exit code, JSON for stdout or None)."""
    if env.get("CNI_COMMAND") == "VERSION":   # the hot path: nothing heavy imported
        try:
            return 0, version_answer(stdin)
        except VersionError as exc:
            return 1, {"cniVersion": CURRENT, "code": exc.code, "msg": str(exc)}
    from netfabric.plugin.cni import fastjson, spec
    from netfabric.plugin.cni.spec import CniError

    version = CURRENT
    try:
        req = spec.parse(env, stdin)
        version = req.version
        try:
            conf = fastjson.loads(stdin.decode())
            conf_socket = conf.get("socket") if isinstance(conf, dict) else None
        except ValueError:
            conf_socket = None
        path = _socket_path(conf_socket if isinstance(conf_socket, str) else None, env)
        if req.command == "DEL":
            try:
                call_agent(path, req.to_agent())
            except CniError as exc:
                if exc.code != spec.ERR_TRY_LATER:
                    raise
            return 0, None
        if req.command == "STATUS":
            try:
                call_agent(path, req.to_agent())
            except CniError as exc:
                raise CniError(spec.ERR_NOT_AVAILABLE, exc.msg) from exc
            return 0, None
        answer = call_agent(path, req.to_agent())
        if req.command == "ADD":
            if not isinstance(answer, dict):
                raise CniError(100, "the netfabric agent answered ADD without an attachment")
            return 0, spec.result(req, answer)
        return 0, None
    except CniError as exc:
        return 1, spec.error_object(version, exc)


def main() -> int:
    try:
        stdin = sys.stdin.buffer.read() if not sys.stdin.isatty() else b""
    except OSError:
        stdin = b""
    code, out = run(os.environ, stdin)
    if out is not None:
        if code == 0 and os.environ.get("CNI_COMMAND") == "VERSION":
            text = encode_answer(out)
        else:
            from netfabric.plugin.cni.fastjson import dumps
            text = dumps(out)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
