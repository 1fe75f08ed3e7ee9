"""One netns module, one name rule (the DNS server and the dataplane used to differ)."""

import pytest

from netfabric.errors import InvalidArgument
from netfabric.netns import netns_path


@pytest.mark.parametrize("name", ["nf3a2b1c-h1", "nf3a2b1c-h1-c0123abcd", "cni-1234_ab.x",
                                  "a" * 200])
def test_names_the_project_makes_are_accepted(name: str) -> None:
    assert netns_path(name) == f"/run/netns/{name}"


@pytest.mark.parametrize("name", ["", ".", "..", "../etc", "a/b", "a b", "a\nb", "a" * 201,
                                  "ns;rm"])
def test_names_that_could_escape_or_break_a_command_line_are_refused(name: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid netns name"):
        netns_path(name)
