"""Static checks of the production-like deployment: docker-compose.yml, Dockerfile, deploy/.

Nothing here runs Docker: the files are parsed and checked against the code they deploy
(app/settings.py, app/topics.py, pyproject.toml), so a renamed setting, a new topic or a
changed port that the deployment misses fails here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import Settings
from app.topics import CHANGELOG_CONFIG, TABLES, all_topics

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = ROOT / "pyproject.toml"

#: Topics kafka-init creates ahead of app/topics.py (announced by a later issue).
PLANNED_TOPICS = {"kairos.triggers"}

_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def _interpolate(value: str) -> str:
    """Compose variable interpolation as if the host set only the required variables."""

    def substitute(match: re.Match[str]) -> str:
        op = match["op"] or ""
        if op.endswith("-"):
            return match["arg"]
        if op.endswith("?"):
            return f"host-{match['name'].lower()}"
        return ""

    parts = value.split("$$")  # `$$` is a literal `$`
    return "$".join(_INTERPOLATION.sub(substitute, part) for part in parts)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as written (before interpolation), list or mapping form."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {key: value for key, value in pairs}
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _command_text(service: dict[str, Any]) -> str:
    command = service.get("command") or ""
    return command if isinstance(command, str) else "\n".join(map(str, command))


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def _exec_form(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    values = [args for name, args in instructions if name == keyword]
    assert values, f"Dockerfile has no {keyword}"
    parsed = json.loads(values[-1])  # the last one wins; exec (JSON) form required
    assert isinstance(parsed, list)
    return [str(item) for item in parsed]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


@pytest.fixture()
def worker_env(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {key: _interpolate(value) for key, value in _environment(services["kairos"]).items()}


@pytest.fixture()
def worker_settings(worker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings a worker of the compose file reads (only the compose environment)."""
    for key in list(os.environ):
        if key.upper().startswith("KAIROS_"):
            monkeypatch.delenv(key)
    for key, value in worker_env.items():
        monkeypatch.setenv(key, value)
    return Settings()


@pytest.fixture(scope="module")
def topic_commands(services: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Topic name -> extra arguments of each `create <topic> [args]` line of kafka-init."""
    text = _command_text(services["kafka-init"]).replace("$$", "$")
    commands: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = re.match(r"\s*create\s+(?!\(\))(.+)$", line)
        if match:
            topic, *args = shlex.split(match[1])
            assert topic not in commands, f"{topic} created twice"
            commands[topic] = args
    return commands


@pytest.fixture(scope="module")
def create_function(services: dict[str, dict[str, Any]]) -> str:
    """The kafka-topics.sh call every `create` line of kafka-init runs."""
    text = _command_text(services["kafka-init"]).replace("$$", "$")
    match = re.search(r"create\(\)\s*\{(?P<body>.*?)\n\s*\}", text, re.S)
    assert match, "kafka-init defines no create() shell function"
    return " ".join(match["body"].replace("\\\n", " ").split())


def test_compose_defines_broker_topic_init_workers_metrics_and_api(
    services: dict[str, dict[str, Any]],
) -> None:
    assert {"kafka", "kafka-init", "kairos", "prometheus", "api"} <= services.keys()
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka-init"]["image"] == services["kafka"]["image"]
    assert "build" in services["kairos"]


def test_kafka_runs_kraft_as_one_combined_broker_and_controller_without_zookeeper(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    env = _environment(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@")
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert f"{controller}://" in env["KAFKA_LISTENERS"]
    assert f"{controller}:" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "PLAINTEXT"
    assert env["CLUSTER_ID"]
    # No ZooKeeper service, image or setting anywhere (comments aside).
    assert "zookeeper" not in json.dumps(compose).lower()


def test_kafka_internal_topics_have_one_replica_and_topics_are_never_auto_created(
    services: dict[str, dict[str, Any]],
) -> None:
    env = _environment(services["kafka"])
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env.get(key) == "1", key
    assert env.get("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS") == "0"
    assert env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE") == "false"


def test_kafka_is_healthchecked_by_its_api_and_keeps_data_in_a_named_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    kafka = services["kafka"]
    probe = " ".join(kafka["healthcheck"]["test"])
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in probe or "kafka-topics.sh" in probe
    assert "localhost:9092" in probe
    log_dirs = _environment(kafka)["KAFKA_LOG_DIRS"]
    mounts = dict(volume.split(":")[:2][::-1] for volume in kafka["volumes"])
    assert mounts.get(log_dirs) in compose["volumes"]


def test_kafka_init_creates_every_topic_of_the_app(
    worker_settings: Settings, topic_commands: dict[str, list[str]]
) -> None:
    expected = {spec.name for spec in all_topics(worker_settings)}
    assert expected <= topic_commands.keys(), expected - topic_commands.keys()


def test_kafka_init_creates_no_topic_unknown_to_the_app(
    worker_settings: Settings, topic_commands: dict[str, list[str]]
) -> None:
    known = {spec.name for spec in all_topics(worker_settings)} | PLANNED_TOPICS
    assert topic_commands.keys() <= known, topic_commands.keys() - known
    assert topic_commands.keys() >= PLANNED_TOPICS


def test_kafka_init_gives_every_topic_the_worker_partition_count_and_one_replica(
    services: dict[str, dict[str, Any]], create_function: str
) -> None:
    args = shlex.split(create_function)
    assert args[0] == "/opt/kafka/bin/kafka-topics.sh"
    assert {"--create", "--if-not-exists"} <= set(args)
    assert args[args.index("--replication-factor") + 1] == "1"
    # The very same compose expression as the workers' KAIROS_PARTITIONS: they cannot drift.
    partitions = args[args.index("--partitions") + 1]
    assert partitions == _environment(services["kairos"])["KAIROS_PARTITIONS"]
    assert partitions == "${KAIROS_PARTITIONS:-8}"
    assert args[-2:] == ["--topic", "$@"]


#: Their records hold many keys' values under keys unique per record: kept whole, never compacted.
WRITTEN_BACK = {"kairos-identity-changelog", "kairos-profiles-changelog", "kairos-timers-changelog"}


def test_only_per_key_changelog_topics_are_compacted(
    topic_commands: dict[str, list[str]],
) -> None:
    changelogs = {name for name in topic_commands if name.endswith("-changelog")}
    assert changelogs == {f"kairos-{table}-changelog" for table in TABLES}
    for name, args in topic_commands.items():
        compacted = "cleanup.policy=compact" in args
        assert compacted == (name in changelogs - WRITTEN_BACK), name
        if compacted:
            assert args[args.index("cleanup.policy=compact") - 1] == "--config"


@pytest.mark.parametrize("topic", sorted(WRITTEN_BACK))
def test_written_back_changelogs_are_kept_forever(
    topic_commands: dict[str, list[str]], topic: str
) -> None:
    args = topic_commands[topic]
    configs = [args[i + 1] for i, arg in enumerate(args) if arg == "--config"]
    assert configs == ["cleanup.policy=delete", "retention.ms=-1"]
    # As a worker creates them where they are missing (app/topics.py).
    assert configs == [f"{key}={value}" for key, value in CHANGELOG_CONFIG.items()]


def test_worker_and_topic_init_use_the_kafka_advertised_plaintext_listener(
    services: dict[str, dict[str, Any]], worker_env: dict[str, str], create_function: str
) -> None:
    advertised = dict(
        listener.split("://", 1)
        for listener in _environment(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    address = advertised["PLAINTEXT"]
    assert address == "kafka:9092"
    assert worker_env["KAIROS_BROKER"] == f"kafka://{address}"
    assert worker_env["KAIROS_BROKER_KIND"] == "kafka"
    assert f"--bootstrap-server {address}" in create_function


def test_every_worker_kairos_variable_is_a_valid_setting(
    worker_env: dict[str, str], worker_settings: Settings
) -> None:
    fields = {f"KAIROS_{name.upper()}" for name in Settings.model_fields}
    kairos_vars = {key for key in worker_env if key.startswith("KAIROS_")}
    assert kairos_vars <= fields, kairos_vars - fields
    # The values parse: worker_settings was built from exactly this environment.
    assert worker_settings.broker_kind == "kafka"
    assert worker_settings.web_host == "0.0.0.0"
    assert str(worker_settings.data_dir) == "/var/lib/kairos"
    assert worker_settings.write_keys == ["host-kairos_write_keys"]


def test_worker_requires_write_keys_and_admin_token_from_the_host(
    services: dict[str, dict[str, Any]],
) -> None:
    env = _environment(services["kairos"])
    for key in ("KAIROS_WRITE_KEYS", "KAIROS_ADMIN_TOKEN"):
        assert re.fullmatch(rf"\$\{{{key}:\?[^}}]+\}}", env[key]), key


def test_worker_service_is_scalable_without_fixed_ports(
    compose: dict[str, Any], services: dict[str, dict[str, Any]], worker_env: dict[str, str]
) -> None:
    worker = services["kairos"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert "hostname" not in worker
    assert worker_env["KAIROS_WEB_PORT"] in {str(port) for port in worker["expose"]}
    # Each replica needs its own RocksDB directory: no named (shared) volume on the data dir.
    data_dir = worker_env["KAIROS_DATA_DIR"]
    mounts = {str(volume) for volume in worker.get("volumes", [])}
    assert data_dir in mounts
    named = set(compose.get("volumes") or {})
    assert not any(mount.split(":")[0] in named for mount in mounts)
    # The canonical URL is per replica (docker/entrypoint.sh), so never fixed here.
    assert "KAIROS_CANONICAL_URL" not in worker_env


def test_services_start_after_kafka_is_healthy_and_topics_exist(
    services: dict[str, dict[str, Any]],
) -> None:
    assert _depends_on(services["kafka-init"]) == {"kafka": "service_healthy"}
    worker = _depends_on(services["kairos"])
    assert worker["kafka-init"] == "service_completed_successfully"
    assert services["kafka-init"].get("restart", "no") == "no"
    assert "kairos" in _depends_on(services["api"])


def test_prometheus_scrapes_every_worker_replica_on_the_web_port(
    services: dict[str, dict[str, Any]], worker_env: dict[str, str]
) -> None:
    prometheus = services["prometheus"]
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", prometheus["image"])
    mounts = dict(volume.split(":")[:2][::-1] for volume in prometheus["volumes"])
    source = mounts["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load((ROOT / source).read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "kairos"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["kairos"]  # the compose service name: one A record per replica
    assert sd["type"] == "A"
    assert str(sd["port"]) == worker_env["KAIROS_WEB_PORT"]
    assert "static_configs" not in job


def test_api_proxy_publishes_the_worker_api_round_robin(
    services: dict[str, dict[str, Any]], worker_env: dict[str, str]
) -> None:
    api = services["api"]
    assert api["ports"]
    mounts = dict(volume.split(":")[:2][::-1] for volume in api["volumes"])
    conf = (ROOT / mounts["/etc/nginx/conf.d/default.conf"]).read_text()
    assert f"http://kairos:{worker_env['KAIROS_WEB_PORT']}" in conf
    assert "resolver 127.0.0.11" in conf  # re-resolves the service as replicas come and go


def test_image_entrypoint_runs_the_kairos_console_script() -> None:
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    assert "kairos" in scripts
    instructions = _dockerfile_instructions()
    entrypoint = _exec_form(instructions, "ENTRYPOINT")
    assert _exec_form(instructions, "CMD") == ["worker"]
    if entrypoint != ["kairos"]:
        # A wrapper script copied from the repo, which must end by exec-ing the console script.
        (name,) = entrypoint
        copies = [args.split() for kw, args in instructions if kw == "COPY"]
        sources = [
            words[-2]
            for words in copies
            if Path(words[-1]).name == Path(name).name or words[-1] == name
        ]
        assert len(sources) == 1, f"{name} is not copied from the repo"
        script = (ROOT / sources[0]).read_text()
        commands = [
            line.strip()
            for line in script.splitlines()
            if line.strip() and not line.startswith("#")
        ]
        assert commands[-1] == 'exec kairos "$@"'
        assert "KAIROS_CANONICAL_URL" in script


def test_image_installs_every_project_package_and_runs_unprivileged() -> None:
    instructions = _dockerfile_instructions()
    assert all(args.startswith("python:3.11-slim") for kw, args in instructions if kw == "FROM")
    copied = {
        word.rstrip("/")
        for kw, args in instructions
        if kw == "COPY" and not args.startswith("--from")
        for word in args.split()[:-1]
    }
    packages = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["packages"]
    assert set(packages) | {"pyproject.toml"} <= copied
    assert any(kw == "RUN" and "pip install ." in args for kw, args in instructions)
    users = [args for kw, args in instructions if kw == "USER"]
    assert users and users[-1] not in {"root", "0"}
    assert "6066" in [args for kw, args in instructions if kw == "EXPOSE"]


def test_workers_read_the_rules_mounted_from_the_repository(
    services: dict[str, dict[str, Any]], worker_env: dict[str, str]
) -> None:
    rules_path = worker_env["KAIROS_RULES"]
    binds = [str(v).split(":") for v in services["kairos"]["volumes"] if ":" in str(v)]
    mounts = {parts[1]: parts[0] for parts in binds}
    assert rules_path in mounts, "KAIROS_RULES must point at a mounted folder"
    source = ROOT / mounts[rules_path]
    assert source.is_dir()
    assert list(source.glob("*.yaml")), "the mounted folder holds rule files"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"KAIROS_RULES={rules_path}" in dockerfile  # the image runs as is, without the mount
