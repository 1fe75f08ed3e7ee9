import pytest

from netfabric.cli.main import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert "netfabric" in capsys.readouterr().out


def test_lab_clean_refuses_foreign_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "clean", "eth"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error:") and "Traceback" not in err
