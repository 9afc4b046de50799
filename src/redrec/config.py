"""Settings, read once at the edges (CLI, service start) and passed down.

Library code never reads ``os.environ``: it receives a :class:`Settings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "read_yaml"]


def _default_home() -> Path:
    return Path.home() / ".redrec"


class Settings(BaseSettings):
    """redrec's configuration.

    ``REDIS_URL`` points at an external Redis (redis://, rediss://, user and password in
    the URL). Without it redrec runs its own embedded Redis with its data under
    ``REDREC_HOME``.
    """

    model_config = SettingsConfigDict(env_prefix="REDREC_", extra="ignore")

    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    home: Path = Field(default_factory=_default_home)
    # How long to wait for a server to answer at start-up and per command.
    connect_timeout: float = 10.0
    socket_timeout: float = 30.0
    # HNSW EF_RUNTIME used when a query does not give one (see benchmarks/README.md).
    ef_runtime: int = 64
    batch_size: int = 500

    @property
    def data_dir(self) -> Path:
        return self.home / "redis"


def read_yaml(path: str | Path, what: str, error: type[Exception] | None = None) -> Any:
    """The parsed YAML file at ``path``; a missing file is a NotFoundError and a broken
    one ``error`` (ConfigError by default), both naming ``what`` the file was for."""
    from redrec.exceptions import ConfigError, NotFoundError

    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"no {what} file at {p}")
    try:
        return yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())[:200]
        raise (error or ConfigError)(f"{what} {p} is not valid YAML: {first}") from None
