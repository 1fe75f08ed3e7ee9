"""JSON for the CNI executable without importing ``json``.

``import json`` imports ``re`` (and with it ``enum``, ``collections``, ``functools``...): on
this loaded machine that alone took longer than the interpreter's start-up, and the plugin
runs for every VERSION podman asks and every container it starts. CPython's ``_json``
accelerator, which ``json.loads``/``json.dumps`` run underneath, is built in: this module
drives its scanner and encoder directly with json's defaults. Bad input falls back to
``json`` itself, for its error message; so does another Python without ``_json``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["dumps", "loads"]

_WS = " \t\n\r"


class _Context:
    """What ``_json.make_scanner`` reads: json.JSONDecoder's defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict[str, str] = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"-Infinity": float("-inf"), "Infinity": float("inf")}.get(name, float("nan"))


def loads(text: str) -> Any:
    """``json.loads(text)`` (ValueError on bad input)."""
    try:
        import _json
    except ImportError:   # pragma: no cover - not CPython
        import json
        return json.loads(text)
    context: Any = _Context()
    scan = _json.make_scanner(context)
    start = len(text) - len(text.lstrip(_WS))
    try:
        value, end = scan(text, start)
        if not text[end:].strip(_WS):
            return value
    except (StopIteration, ValueError, SystemError):
        pass
    # bad input: json's own message (the slow import only on this path)
    import json
    return json.loads(text)


def _unserializable(obj: object) -> object:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps(obj: object) -> str:
    """``json.dumps(obj)`` (TypeError for what JSON cannot hold)."""
    try:
        import _json
    except ImportError:   # pragma: no cover - not CPython
        import json
        return json.dumps(obj)
    encode = _json.make_encoder({}, _unserializable, _json.encode_basestring_ascii, None,
                                ": ", ", ", False, False, True)
    return "".join(encode(obj, 0))
