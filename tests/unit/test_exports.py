"""The public API: __all__ is sorted and complete, as in httpx's test_exported_members."""

import netfabric
import netfabric.errors


def test_all_is_sorted() -> None:
    assert netfabric.__all__ == sorted(netfabric.__all__)


def test_all_names_exist() -> None:
    for name in netfabric.__all__:
        assert hasattr(netfabric, name), name


def test_every_public_member_is_exported() -> None:
    public = {n for n in dir(netfabric) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(netfabric, n)).__name__ == "module"}
    assert public - modules == set(netfabric.__all__) - {"__version__"}


def test_every_error_is_exported_and_in_the_tree() -> None:
    doc = netfabric.errors.__doc__ or ""
    for name in netfabric.errors.__all__:
        cls = getattr(netfabric.errors, name)
        assert issubclass(cls, netfabric.NetfabricError)
        assert name in netfabric.__all__
        assert name in doc, f"{name} missing from the tree in errors.py"
