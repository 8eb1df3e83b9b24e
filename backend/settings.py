"""The one settings class of the service (environment variables with the ``M3_`` prefix)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: The ten species of the M3 paper; the default target list (configuration, not code).
M3_SPECIES: tuple[str, ...] = (
    "gold", "silver", "zinc", "lead", "copper", "nickel", "iron", "uranium", "tungsten", "manganese",
)


class Settings(BaseSettings):
    """Everything the service and the command-line tool can be configured with."""

    model_config = SettingsConfigDict(env_prefix="M3_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of a PostGIS database. Unset: the project-local cluster of `m3 db start`.",
    )
    state_dir: Path = Field(
        default=PROJECT_ROOT / ".m3",
        description="Git-ignored folder for the local PostgreSQL cluster, logs and run state.",
    )
    db_port: int | None = Field(
        default=None,
        description="Port for the local cluster; unset: 5432 if free, else the first free port from 54320.",
    )
    data_dir: Path = Field(default=PROJECT_ROOT / "data", description="Bundled real inputs.")
    host: str = "127.0.0.1"
    port: int = 8000
    sites_max_limit: int = Field(default=10_000, ge=1, description="Largest `limit` /api/sites accepts.")
    sites_default_limit: int = Field(default=1000, ge=1)
    db_pool_size: int = Field(default=5, ge=1)
    admin_token: SecretStr = SecretStr("change-me")
    development: bool = Field(default=True, description="Development mode (relaxes production checks).")
    log_level: str = "INFO"

    @property
    def local_cluster_dir(self) -> Path:
        """Folder of the project-local PostgreSQL cluster."""
        return self.state_dir / "pg"

    def resolved_database_url(self) -> str:
        """The database URL in use: M3_DATABASE_URL, else the local cluster's."""
        if self.database_url:
            return self.database_url
        from backend.db.cluster import LocalCluster

        return LocalCluster.from_settings(self).url()


@lru_cache
def get_settings() -> Settings:
    """Settings read once from the environment (tests build their own)."""
    return Settings()
