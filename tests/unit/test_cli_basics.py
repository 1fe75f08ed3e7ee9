import pytest

from netfabric.cli.main import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert "netfabric" in capsys.readouterr().out


def test_lab_clean_refuses_foreign_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "clean", "eth"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error:") and "Traceback" not in err


def test_building_the_parser_loads_no_dataplane() -> None:
    """Every ``netfabric`` command builds the whole parser: the agent's flags must not pull
    the daemon, the dataplane and pyroute2 in (~0.3 s of each command; the cluster tests
    run thousands of them)."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from netfabric.cli.main import build_parser\n"
            "build_parser()\n"
            "heavy = {'pyroute2', 'netfabric.agent.daemon', 'netfabric.dataplane.kernel'}\n"
            "print(','.join(sorted(heavy & set(sys.modules))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "", f"building the parser imported {out}"
