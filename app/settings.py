"""Every runtime setting of Kairos, read from `KAIROS_*` environment variables.

This model is the single documented place for configuration (docs/configuration.md lists it);
nothing else in Kairos reads the environment.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: The example rules of the repository Kairos is installed from (`make run` loads them).
EXAMPLE_RULES = Path(__file__).resolve().parents[1] / "examples" / "rules"
#: One broker of KAIROS_BROKER: a host name or address (IPv6 in brackets) and a port.
_BROKER = re.compile(r"kafka://([A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})")
#: The characters Kafka allows in a topic name.
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]+")


def broker_problem(url: str) -> str | None:
    """Why `url` is not a KAIROS_BROKER value (`kafka://host:port`, several joined by `;`)."""
    for part in url.split(";"):
        found = _BROKER.fullmatch(part)
        if found is None or not 1 <= int(found.group(2)) <= 65535:
            return (
                f"{part!r} is not kafka://host:port "
                "(several brokers: kafka://host1:9092;kafka://host2:9092)"
            )
    return None


def canonical_url_problem(url: str) -> str | None:
    """Why `url` is not a URL other workers can reach this one's HTTP API at."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        return "not an http:// or https:// URL, e.g. http://worker-1:6066"
    return None


def topic_name_problem(part: str) -> str | None:
    """Why `part` (the topic prefix, the app id) cannot start Kafka topic names."""
    if _TOPIC_NAME.fullmatch(part) is None:
        return "only letters, digits, `.`, `_` and `-`, as in Kafka topic names"
    return None


class Settings(BaseSettings):
    """Kairos settings. Each field is read from `KAIROS_<FIELD_NAME>`."""

    model_config = SettingsConfigDict(env_prefix="KAIROS_", extra="ignore")

    broker: str | None = Field(
        default=None,
        description="Kafka bootstrap URL, kafka://host:port (several joined by `;`). Unset: "
        "`kairos dev` spawns the embedded broker; `kairos worker` uses kafka://127.0.0.1:9092.",
    )
    broker_kind: Literal["kafka", "tansu"] = Field(
        default="kafka",
        description="Which broker is behind KAIROS_BROKER. `tansu` (the embedded broker) "
        "turns on the short fetch wait it needs.",
    )
    app_id: str = Field(
        default="kairos",
        description="Faust app id (consumer group; starts the changelog topics' names, so "
        "[A-Za-z0-9._-] only).",
    )
    topic_prefix: str = Field(
        default="kairos", description="Prefix of every topic name ([A-Za-z0-9._-] only)."
    )
    partitions: int = Field(default=8, ge=1, le=1024, description="Partitions of every topic.")
    web_host: str = Field(default="127.0.0.1", description="Interface the HTTP API binds to.")
    web_port: int = Field(default=6066, ge=1, le=65535, description="Port of the HTTP API.")
    canonical_url: str | None = Field(
        default=None,
        description="http(s) URL other workers use to reach this one's HTTP API "
        "(default http://WEB_HOST:WEB_PORT).",
    )
    write_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated Segment write keys accepted by the collector.",
    )
    admin_token: str | None = Field(
        default=None,
        description="Bearer token for admin endpoints (GET /users/{id}). Unset: they answer 401.",
    )
    data_dir: Path = Field(
        default=Path(".kairos/data"), description="Worker state (RocksDB) directory."
    )
    processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        default="at_least_once",
        description="Faust processing guarantee; exactly_once needs Apache Kafka transactions.",
    )
    rules: Path = Field(
        default=EXAMPLE_RULES,
        description="Rule file, or folder of *.yaml rule files, loaded at start "
        "(default: the example rules shipped with Kairos).",
    )
    recent_items: int = Field(default=10, ge=0, le=100, description="Items kept per user.")
    batch_size: int = Field(default=500, ge=1, description="Most events an agent takes at once.")
    batch_window: float = Field(
        default=0.01, gt=0, description="Seconds an agent waits to fill a batch."
    )
    fetch_max_wait_ms: int | None = Field(
        default=None,
        ge=1,
        le=5000,
        description="Longest wait of a consumer fetch on an idle partition (ms). Default: 1500 "
        "(Faust's) on Apache Kafka, 20 on the embedded broker, which holds fetches that long.",
    )
    timer_tick: float = Field(
        default=0.25,
        gt=0,
        le=10,
        description="Seconds between timer ticks: timers fire at most about this late.",
    )
    log_level: Literal["debug", "info", "warn", "error"] = Field(
        default="info", description="Worker log level. `kairos dev` runs its worker at `warn`."
    )

    @field_validator("write_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    # Checked at start: a bad value otherwise surfaced later as a traceback from Kafka or Faust,
    # or as topics the broker refuses. Empty counts as unset, as it always has.
    @field_validator("broker")
    @classmethod
    def _check_broker(cls, value: str | None) -> str | None:
        return _valid(value, broker_problem) if value else value

    @field_validator("canonical_url")
    @classmethod
    def _check_canonical_url(cls, value: str | None) -> str | None:
        return _valid(value, canonical_url_problem) if value else value

    # The app id starts the changelog topics' names (`<app_id>-profiles-changelog`).
    @field_validator("topic_prefix", "app_id")
    @classmethod
    def _check_topic_name_part(cls, value: str) -> str:
        return _valid(value, topic_name_problem)

    @property
    def broker_url(self) -> str:
        return self.broker or "kafka://127.0.0.1:9092"

    @property
    def web_url(self) -> str:
        return self.canonical_url or f"http://{self.web_host}:{self.web_port}"


def _valid(value: str, problem: Callable[[str], str | None]) -> str:
    why = problem(value)
    if why is not None:
        raise ValueError(why)
    return value


class SettingsError(ValueError):
    """Invalid settings: the message names each `KAIROS_*` variable at fault, one per line."""


def settings_error(exc: ValidationError) -> SettingsError:
    """The variables behind pydantic's errors, named as the user wrote them."""
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        variable = f"KAIROS_{field.upper()}" if field else "KAIROS_*"
        # Our own checks' messages without pydantic's "Value error, " in front.
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{variable}: {message} (got {error.get('input')!r})")
    return SettingsError("\n".join(problems))


def read_settings(values: dict[str, str] | None = None) -> Settings:
    """Settings from the environment, or from `values` (field → text) when given."""
    try:
        return Settings() if values is None else Settings.model_validate(values)
    except ValidationError as exc:
        raise settings_error(exc) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return read_settings()
