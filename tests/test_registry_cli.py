"""`dialer registry import|status|lookup` against a real redis-server."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from dialer.cli import main
from dialer.registry.store import RegistryStore
from tests.registry_files import nanp_numbers, write_lines


@pytest.fixture
def env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DIALER_REDIS_URL", redis_url)
    monkeypatch.delenv("DIALER_CONFIG", raising=False)
    RegistryStore.forget_all()
    return redis_url


def test_import_status_lookup(env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    numbers = nanp_numbers(1000)
    path = write_lines(tmp_path / "dnc.txt", [*numbers, "12345"])
    assert main(["registry", "import", "--registry", "us_dnc", "--file", str(path), "--max-bad-share", "0.01"]) == 0
    out, err = capsys.readouterr()
    assert "version 1 live: 1000 numbers" in out
    assert "line 1001: expected 10 digits" in out
    assert "reading" in err  # the progress bar

    assert main(["registry", "status"]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("us_dnc: version 1, 1000 numbers, loaded ") and "full from dnc.txt" in out

    assert main(["registry", "lookup", "+1" + numbers[0], "+12125550000"]) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines() == [f"+1{numbers[0]}: listed in us_dnc (checked us_dnc)",
                                "+12125550000: not listed (checked us_dnc)"]

    changes = write_lines(tmp_path / "chg.txt", [f"D,{numbers[0]}"])
    assert main(["registry", "import", "--registry", "us_dnc", "--file", str(changes), "--delta", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "version 2 live: 999 numbers (+0 -1)" in out and "reading" not in err


def test_refused_import_exits_1_and_lists_bad_lines(env: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = write_lines(tmp_path / "bad.txt", ["0145678901", "hello", "0145678902"])
    assert main(["registry", "import", "--registry", "bloctel", "--file", str(path), "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert "line 2: unexpected characters" in out
    assert "load refused, nothing changed" in err and "1 of 3 lines are malformed" in err
    assert main(["registry", "status", "bloctel"]) == 1
    assert "bloctel: not loaded" in capsys.readouterr().out


def test_user_errors_are_one_line(env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["registry", "import", "--registry", "Bad Name", "--file", "x"]) == 1
    assert "registry name" in capsys.readouterr().err
    assert main(["registry", "import", "--registry", "us_dnc", "--file", str(tmp_path / "nope.txt")]) == 1
    assert "cannot read nope.txt" in capsys.readouterr().err
    assert main(["registry", "lookup", "+12125550000"]) == 1
    assert "no registry loaded" in capsys.readouterr().err
    assert main(["registry", "lookup", "--registry", "us_dnc", "+12125550000"]) == 1
    assert "us_dnc is not loaded" in capsys.readouterr().err
    write_lines(tmp_path / "a.txt", ["2125551234"])
    main(["registry", "import", "--registry", "us_dnc", "--file", str(tmp_path / "a.txt"), "--quiet"])
    capsys.readouterr()
    assert main(["registry", "lookup", "2125551234"]) == 1
    assert "not an E.164 number" in capsys.readouterr().err


def test_import_refuses_a_drastic_shrink_unless_forced(env: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    numbers = nanp_numbers(1000)
    full = write_lines(tmp_path / "full.txt", numbers)
    cut = write_lines(tmp_path / "cut.txt", numbers[:100])
    assert main(["registry", "import", "--registry", "us_dnc", "--file", str(full), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["registry", "import", "--registry", "us_dnc", "--file", str(cut), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "load refused, nothing changed: cut.txt would remove 900 of the 1000 numbers" in err and "--force" in err
    assert RegistryStore(redis.Redis.from_url(env)).status("us_dnc").rows == 1000
    assert main(["registry", "import", "--registry", "us_dnc", "--file", str(cut), "--quiet",
                 "--max-shrink-share", "0.95"]) == 0
    assert "version 2 live: 100 numbers (+0 -900)" in capsys.readouterr().out
    assert main(["registry", "import", "--registry", "us_dnc", "--file", str(full), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["registry", "import", "--registry", "us_dnc", "--file", str(cut), "--quiet", "--force"]) == 0
    assert "version 4 live: 100 numbers (+0 -900)" in capsys.readouterr().out
    assert main(["registry", "import", "--registry", "us_dnc", "--file", str(cut), "--max-shrink-share", "2"]) == 1
    assert "--max-shrink-share: expected a share" in capsys.readouterr().err


def test_thresholds_come_from_the_settings(env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    numbers = nanp_numbers(100)
    bad = write_lines(tmp_path / "bad.txt", [*numbers[:90], *["hello"] * 10])  # 10% malformed
    assert main(["registry", "import", "--registry", "us_dnc", "--file", str(bad), "--quiet"]) == 1
    assert "10 of 100 lines are malformed" in capsys.readouterr().err
    monkeypatch.setenv("DIALER_REGISTRY_MAX_BAD_SHARE", "0.2")
    assert main(["registry", "import", "--registry", "us_dnc", "--file", str(bad), "--quiet"]) == 0
    assert "version 1 live: 90 numbers" in capsys.readouterr().out
    cut = write_lines(tmp_path / "cut.txt", numbers[:50])  # removes 40 of 90
    assert main(["registry", "import", "--registry", "us_dnc", "--file", str(cut), "--quiet"]) == 1
    assert "would remove 40 of the 90 numbers" in capsys.readouterr().err
    monkeypatch.setenv("DIALER_REGISTRY_MAX_SHRINK_SHARE", "0.5")
    assert main(["registry", "import", "--registry", "us_dnc", "--file", str(cut), "--quiet"]) == 0
    assert "live: 50 numbers (+0 -40)" in capsys.readouterr().out
    monkeypatch.setenv("DIALER_REGISTRY_MAX_SHRINK_SHARE", "1.5")
    assert main(["registry", "import", "--registry", "us_dnc", "--file", str(cut), "--quiet"]) != 0
    assert "registry.max_shrink_share" in capsys.readouterr().err


def test_obtained_at_is_recorded_and_checked(env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_lines(tmp_path / "dnc.txt", nanp_numbers(10))
    base = ["registry", "import", "--registry", "us_dnc", "--file", str(path), "--quiet"]
    assert main([*base, "--obtained-at", "yesterday"]) == 1
    assert "--obtained-at: expected a date" in capsys.readouterr().err
    assert main([*base, "--obtained-at", "2999-01-01"]) == 1
    assert "in the future" in capsys.readouterr().err
    assert main([*base, "--obtained-at", "2026-11-20"]) == 0
    capsys.readouterr()
    v = RegistryStore(redis.Redis.from_url(env)).status("us_dnc")
    assert v is not None and v.obtained_at is not None and v.obtained_at.isoformat() == "2026-11-20T00:00:00+00:00"
    assert main(["registry", "status", "us_dnc"]) == 0
    assert "(obtained 2026-11-20 00:00:00 UTC)" in capsys.readouterr().out
