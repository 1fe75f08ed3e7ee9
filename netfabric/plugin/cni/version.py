"""VERSION, the call podman makes for every plugin on every command: pure, and importing
nothing the interpreter has not loaded at start-up, so that the executable answers it in the
interpreter's bare start-up time.

Stdin is decoded by :mod:`.fastjson` (``json`` itself would import ``re``), and the fixed
answer is written by hand.
"""

from __future__ import annotations

from netfabric.plugin.cni.fastjson import loads

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


__all__ = ["CURRENT", "SUPPORTED", "VersionError", "encode_answer", "is_version",
           "version_answer"]

CURRENT = "1.1.0"
SUPPORTED = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")


class VersionError(ValueError):
    """Stdin is not a JSON object with a valid ``cniVersion`` (code 6 or 7)."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code


def is_version(v: object) -> bool:
    """``v`` looks like ``MAJOR.MINOR.PATCH``."""
    if not isinstance(v, str):
        return False
    parts = v.split(".")
    return len(parts) == 3 and all(p.isdigit() and p.isascii() for p in parts)


def version_answer(stdin: bytes) -> dict[str, Any]:
    """The versions this plugin speaks; the answer's version is the request's when we speak
    it (an empty stdin asks in the current version)."""
    if not stdin.strip():
        return {"cniVersion": CURRENT, "supportedVersions": list(SUPPORTED)}
    try:
        conf = loads(stdin.decode())
    except ValueError as exc:   # UnicodeDecodeError is a ValueError
        raise VersionError(6, f"network configuration on stdin is not JSON: {exc}") from exc
    if not isinstance(conf, dict):
        raise VersionError(6, "network configuration on stdin must be a JSON object")
    version = conf.get("cniVersion", CURRENT)
    if not is_version(version):
        raise VersionError(7, f"cniVersion {version!r} is not a version like 1.0.0")
    return {"cniVersion": version if version in SUPPORTED else CURRENT,
            "supportedVersions": list(SUPPORTED)}


def encode_answer(answer: dict[str, Any]) -> str:
    """A VERSION answer as JSON (its values are version strings: digits and dots)."""
    versions = ", ".join(f'"{v}"' for v in answer["supportedVersions"])
    return f'{{"cniVersion": "{answer["cniVersion"]}", "supportedVersions": [{versions}]}}'
