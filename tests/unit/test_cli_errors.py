"""What the user must fix is said in one message, without a traceback: an invalid setting names
its variable, invalid rules name file, rule and field (docs/configuration.md)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from app.broker import free_port
from app.settings import SettingsError, read_settings

ROOT = Path(__file__).resolve().parents[2]


def kairos(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KAIROS_")}
    # Not the default port: a `make run` may hold it while the suite runs.
    environment["KAIROS_WEB_PORT"] = str(free_port())
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_invalid_setting_names_its_variable_and_what_it_got() -> None:
    with pytest.raises(SettingsError) as raised:
        read_settings({"partitions": "abc", "log_level": "verbose"})
    lines = str(raised.value).splitlines()
    assert lines[0].startswith("KAIROS_PARTITIONS: ") and lines[0].endswith("(got 'abc')")
    assert lines[1].startswith("KAIROS_LOG_LEVEL: ") and "'verbose'" in lines[1]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("broker", "foo"),
        ("broker", "broker:9092"),
        ("broker", "kafka://broker"),
        ("broker", "kafka://a:9092;b:9092"),
        ("canonical_url", "notaurl"),
        ("canonical_url", "ftp://worker:6066"),
        ("topic_prefix", "a b"),
        ("topic_prefix", "kairos/test"),
        ("app_id", "my app"),
    ],
)
def test_a_broker_url_canonical_url_or_topic_prefix_of_the_wrong_form_is_invalid(
    field: str, value: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        read_settings({field: value})
    [line] = str(raised.value).splitlines()
    assert line.startswith(f"KAIROS_{field.upper()}: ") and line.endswith(f"(got {value!r})")
    assert "Value error" not in line


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("broker", "kafka://broker:9092"),
        ("broker", "kafka://10.0.0.1:9092;kafka://kafka-2.example.com:19092"),
        ("broker", ""),  # as unset
        ("canonical_url", "http://worker-1:6066"),
        ("canonical_url", "https://kairos.example.com/api"),
        ("topic_prefix", "kairos-staging_2.eu"),
        ("app_id", "kairos-staging_2.eu"),
    ],
)
def test_the_documented_forms_of_these_settings_are_valid(field: str, value: str) -> None:
    assert getattr(read_settings({field: value}), field) == value


def test_a_worker_with_an_invalid_setting_stops_with_the_variable_not_a_traceback() -> None:
    done = kairos("worker", "--no-create-topics", KAIROS_PARTITIONS="abc", KAIROS_BROKER="foo")
    assert done.returncode == 1
    assert "KAIROS_PARTITIONS: " in done.stderr and "Traceback" not in done.stderr
    assert "KAIROS_BROKER: 'foo' is not kafka://host:port" in done.stderr


def test_a_worker_with_invalid_rules_stops_naming_file_rule_and_field(tmp_path: Path) -> None:
    (tmp_path / "cart.yaml").write_text(
        "rules:\n"
        "  - id: cart_reminder\n"
        "    when: {event: Product Added}\n"
        "    if: {count: {event: Product Added, within: 120d}, op: gte, value: 2}\n"
        "    then: {type: x, channel: email, content: {a: b}}\n"
    )
    done = kairos(
        "worker",
        "--no-create-topics",
        KAIROS_RULES=str(tmp_path),
        KAIROS_BROKER="kafka://127.0.0.1:1",
        KAIROS_DATA_DIR=str(tmp_path / "data"),
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"{tmp_path / 'cart.yaml'}: rule cart_reminder: if.count.within:" in done.stderr


@pytest.mark.parametrize("command", ["dev", "worker"])
def test_a_taken_http_port_is_said_before_anything_starts(command: str, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = kairos(
            *([command, "--no-create-topics"] if command == "worker" else [command]),
            KAIROS_WEB_PORT=str(port),
            KAIROS_BROKER="kafka://127.0.0.1:1",
            KAIROS_DATA_DIR=str(tmp_path / "data"),
        )
    assert done.returncode == 1, done.stderr
    assert f"KAIROS_WEB_PORT: port {port} on 127.0.0.1 is taken" in done.stderr
    assert "Traceback" not in done.stderr


def test_triggers_without_a_reachable_broker_says_where_it_looked_in_one_line() -> None:
    broker = f"kafka://127.0.0.1:{free_port()}"  # nothing listens there
    done = kairos("triggers", KAIROS_BROKER=broker)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(f"kairos: no Kafka broker answers at {broker}: ")
    assert "set KAIROS_BROKER" in line
