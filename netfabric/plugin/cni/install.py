"""``netfabric cni install``: a conflist for a netfabric network, and the plugin executable.

Defaults are podman's (and the CNI reference's): configurations in ``/etc/cni/net.d``,
plugins in ``/opt/cni/bin``. The conflist declares the capabilities podman fills in
``runtimeConfig`` (``aliases``, ``portMappings``, ``ips``, ``mac``); its cniVersion is 1.0.0,
the newest podman 4.3 reads. The plugin is a small script that runs this netfabric's
``netfabric.plugin.cni.main`` with this interpreter, so no PATH is needed.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Final

from netfabric.errors import InvalidArgument

__all__ = ["BIN_DIR", "CONF_DIR", "PLUGIN", "conflist", "install", "plugin_script"]

CONF_DIR: Final = "/etc/cni/net.d"
BIN_DIR: Final = "/opt/cni/bin"
PLUGIN: Final = "netfabric"
CAPABILITIES: Final = ("aliases", "portMappings", "ips", "mac")


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


def _write(path: str, text: str, mode: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def install(name: str, *, network: str | None = None, conf_dir: str = CONF_DIR,
            bin_dir: str = BIN_DIR, version: str = "1.0.0", socket: str | None = None
            ) -> tuple[str, str]:
    """Write ``conf_dir/NAME.conflist`` and ``bin_dir/netfabric``; their paths."""
    conf = conflist(name, network=network, version=version, socket=socket)
    conf_path = os.path.join(conf_dir, f"{name}.conflist")
    bin_path = os.path.join(bin_dir, PLUGIN)
    try:
        _write(bin_path, plugin_script(), 0o755)
        _write(conf_path, json.dumps(conf, indent=2) + "\n", 0o644)
    except OSError as exc:
        raise InvalidArgument(f"cannot write the CNI files: {exc}") from exc
    return conf_path, bin_path
