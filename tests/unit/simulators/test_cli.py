"""`carewatch simulate` arguments: defaults, every option, and what is refused."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from simulators.cli import add_arguments, config_from_args


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAREWATCH_DEVICE_SECRET", raising=False)
    config = config_from_args(parse())
    assert (config.wristbands, config.bins, config.interval, config.seed) == (50, 10, 10.0, 1)
    assert config.duration is None and config.secret == "carewatch-dev-secret"
    assert config.sorting_error_rate == 0.1 and not config.shared_account
    monkeypatch.setenv("CAREWATCH_DEVICE_SECRET", "from-env")
    assert config_from_args(parse()).secret == "from-env"


def test_cli_options(tmp_path: Path) -> None:
    scenario_file = tmp_path / "s.toml"
    scenario_file.write_text('specs = ["sos@w0002+1m"]\n', encoding="utf-8")
    args = parse(
        "--wristbands", "3", "--bins", "0", "--interval", "500ms", "--duration", "2m",
        "--scenario", "fall@w0001+5m", "--scenario", "tachycardia@w0000+1m-2m",
        "--scenario-file", str(scenario_file), "--prefix", "t1-", "--secret", "k",
        "--shared-account", "--sorting-error-rate", "0.25", "--seed", "9",
    )  # fmt: skip
    config = config_from_args(args)
    assert config.interval == 0.5 and config.duration == 120 and config.prefix == "t1-"
    assert [i.spec for i in config.incidents] == [
        "fall@w0001+5m",
        "tachycardia@w0000+1m-2m",
        "sos@w0002+1m",
    ]
    assert config.shared_account and config.secret == "k" and config.seed == 9


@pytest.mark.parametrize(
    "argv",
    [
        ["--interval", "fast"],
        ["--interval", "0s"],
        ["--scenario", "fall@w0001"],
        ["--scenario", "jump@w0001+1m"],
        ["--sorting-error-rate", "1.5"],
        ["--wristbands", "-1"],
    ],
)
def test_cli_rejects(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)
    assert "error" in capsys.readouterr().err
