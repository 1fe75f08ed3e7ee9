"""``netfabric cni install``: a conflist for a netfabric network, and the plugin executable.

Defaults are podman's (and the CNI reference's): configurations in ``/etc/cni/net.d``,
plugins in ``/opt/cni/bin``. The conflist declares the capabilities podman fills in
``runtimeConfig`` (``aliases``, ``portMappings``, ``ips``, ``mac``); its cniVersion is 1.0.0,
the newest podman 4.3 reads. The plugin is a small script that runs this netfabric's
``netfabric.plugin.cni.main`` with this interpreter, so no PATH is needed.

What it writes (and the directories it had to make) is recorded in the agent's state
directory, so that ``netfabric reset`` (:func:`uninstall`) takes exactly that away, and
also any other conflist of type netfabric and the plugin it finds in the default places.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any, Final

from netfabric.errors import InvalidArgument

__all__ = ["BIN_DIR", "CONF_DIR", "PLUGIN", "RECORD", "conflist", "install", "plugin_script",
           "uninstall"]

CONF_DIR: Final = "/etc/cni/net.d"
BIN_DIR: Final = "/opt/cni/bin"
PLUGIN: Final = "netfabric"
CAPABILITIES: Final = ("aliases", "portMappings", "ips", "mac")
RECORD: Final = "cni-install.json"
"""In the agent's state directory: ``{"files": [...], "dirs": [...]}`` install made."""
_PLUGIN_MARK: Final = "netfabric.plugin.cni.main"


def conflist(name: str, *, network: str | None = None, version: str = "1.0.0",
             socket: str | None = None) -> dict[str, Any]:
    """The configuration list of CNI network ``name`` on netfabric network ``network``."""
    from netfabric.plugin.cni.version import SUPPORTED

    if version not in SUPPORTED:
        raise InvalidArgument(f"cniVersion {version} is not one of {', '.join(SUPPORTED)}")
    if not name or "/" in name or name.startswith("."):
        raise InvalidArgument(f"invalid CNI network name {name!r}")
    plugin: dict[str, Any] = {"type": PLUGIN, "network": network or name,
                              "capabilities": dict.fromkeys(CAPABILITIES, True)}
    if socket:
        plugin["socket"] = socket
    return {"cniVersion": version, "name": name, "plugins": [plugin]}


def plugin_script(python: str | None = None) -> str:
    """The plugin: this interpreter, isolated and without ``site`` (``-IS``: the plugin
    needs only the standard library and this package, whose directory it puts first), so
    that it starts in the interpreter's bare start-up time (podman runs VERSION for every
    plugin on every command)."""
    import netfabric

    root = os.path.dirname(os.path.dirname(os.path.abspath(netfabric.__file__)))
    return (f"#!{python or sys.executable} -IS\n"
            "import sys\n"
            f"sys.path.insert(0, {root!r})\n"
            "from netfabric.plugin.cni.main import main\n"
            "sys.exit(main())\n")


def _missing_dirs(path: str) -> list[str]:
    """The directories above ``path`` that do not exist yet, outermost first."""
    out: list[str] = []
    d = os.path.dirname(os.path.abspath(path))
    while d and not os.path.isdir(d):
        out.insert(0, d)
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    return out


def _write(path: str, text: str, mode: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _load_record(record_dir: str) -> dict[str, list[str]]:
    try:
        with open(os.path.join(record_dir, RECORD), encoding="utf-8") as f:
            raw = json.load(f)
        return {k: [str(p) for p in raw.get(k, [])] for k in ("files", "dirs")}
    except (OSError, ValueError, AttributeError):
        return {"files": [], "dirs": []}


def install(name: str, *, network: str | None = None, conf_dir: str = CONF_DIR,
            bin_dir: str = BIN_DIR, version: str = "1.0.0", socket: str | None = None,
            record_dir: str | None = None) -> tuple[str, str]:
    """Write ``conf_dir/NAME.conflist`` and ``bin_dir/netfabric``; their paths. With
    ``record_dir`` (the agent's state directory), add them and the directories made for
    them to its record, for :func:`uninstall`."""
    conf = conflist(name, network=network, version=version, socket=socket)
    conf_path = os.path.join(conf_dir, f"{name}.conflist")
    bin_path = os.path.join(bin_dir, PLUGIN)
    made = _missing_dirs(bin_path) + _missing_dirs(conf_path)
    try:
        _write(bin_path, plugin_script(), 0o755)
        _write(conf_path, json.dumps(conf, indent=2) + "\n", 0o644)
        if record_dir is not None:
            rec = _load_record(record_dir)
            rec["files"] = sorted({*rec["files"], os.path.abspath(bin_path),
                                   os.path.abspath(conf_path)})
            rec["dirs"] = list(dict.fromkeys([*rec["dirs"], *made]))
            _write(os.path.join(record_dir, RECORD), json.dumps(rec, indent=1) + "\n", 0o644)
    except OSError as exc:
        raise InvalidArgument(f"cannot write the CNI files: {exc}") from exc
    return conf_path, bin_path


def _ours(path: str) -> bool:
    """A conflist (or conf) of netfabric's plugin type, or netfabric's plugin script."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(1 << 20)
    except OSError:
        return False
    if os.path.basename(path) == PLUGIN:
        return _PLUGIN_MARK in text
    try:
        conf = json.loads(text)
    except ValueError:
        return False
    plugins = conf.get("plugins", [conf]) if isinstance(conf, dict) else []
    return bool(plugins) and all(isinstance(p, dict) and p.get("type") == PLUGIN
                                 for p in plugins)


def uninstall(record_dir: str, *, conf_dir: str = CONF_DIR,
              bin_dir: str = BIN_DIR) -> list[str]:
    """Remove what :func:`install` wrote (its record in ``record_dir``), any other
    netfabric conflist in ``conf_dir`` and the plugin in ``bin_dir``, then the directories
    install made if they are empty; one line per removal. A file changed into someone
    else's since is kept."""
    rec = _load_record(record_dir)
    candidates = list(rec["files"])
    with contextlib.suppress(OSError):
        candidates += sorted(os.path.join(conf_dir, n) for n in os.listdir(conf_dir)
                             if n.endswith((".conflist", ".conf", ".json")))
    candidates.append(os.path.join(bin_dir, PLUGIN))
    done = []
    for path in dict.fromkeys(candidates):
        if os.path.isfile(path) and _ours(path):
            os.unlink(path)
            done.append(f"file {path}")
    for d in reversed(rec["dirs"]):
        with contextlib.suppress(OSError):
            os.rmdir(d)   # only if empty
            done.append(f"directory {d}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(record_dir, RECORD))
    return done
