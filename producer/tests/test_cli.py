"""The command line: bad flags and settings are one clear line and exit 2; runs never share ids."""

from __future__ import annotations

import itertools
import socket

import pytest

from fraudpipe_common.kafka import TopicSettings
from fraudpipe_producer.cli import main, parse_args, synthetic
from fraudpipe_producer.settings import ProducerSettings


def closed_port_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def tx_ids(argv: list[str], count: int = 200) -> list[str]:
    args = parse_args(argv, ProducerSettings(), TopicSettings())
    return [message["tx_id"] for message, _, _ in itertools.islice(synthetic(args), count)]


def test_two_synthetic_runs_never_share_a_tx_id() -> None:
    first, second = tx_ids([]), tx_ids([])

    assert len(set(first)) == len(first)
    assert not set(first) & set(second)


def test_deterministic_ids_replay_the_same_ids() -> None:
    assert tx_ids(["--deterministic-ids"]) == tx_ids(["--deterministic-ids"])


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--users", "0"], "--users"),
        (["--rps", "-5"], "--rps"),
        (["--duration", "-1"], "--duration"),
        (["--duration", "0"], "--duration"),
        (["--count", "-1"], "--count"),
        (["--count", "0"], "--count"),
        (["--fraud-rate", "0.9"], "--fraud-rate"),
        (["--partitions", "0"], "--partitions"),
        (["--connect-timeout", "0"], "--connect-timeout"),
        (["--csv-country", "usa"], "--csv-country"),
        (["--csv-currency", "usd"], "--csv-currency"),
    ],
)
def test_a_bad_flag_is_one_line_and_exit_2(
    flags: list[str],
    named: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", closed_port_address())

    with pytest.raises(SystemExit) as exited:
        main([*flags, "--no-progress"])

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"fraudpipe-produce: {named}")


def test_a_bad_environment_setting_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", closed_port_address())
    monkeypatch.setenv("PRODUCER_USERS", "0")

    assert main(["--count", "1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("fraudpipe-produce: PRODUCER_USERS: ")


def test_a_missing_bootstrap_setting_says_how_to_set_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)

    assert main(["--count", "1"]) == 2
    assert capsys.readouterr().err == (
        'fraudpipe-produce: set KAFKA_BOOTSTRAP_SERVERS (e.g. eval "$(hack/stack env)")\n'
    )
