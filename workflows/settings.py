"""definet's settings, read once from the environment (pydantic-settings, as atomate2's ``Atomate2Settings``).

| variable | field | what |
|---|---|---|
| ``DEFINET_MONGO_URI`` | ``mongo_uri`` | MongoDB URI of the documents; unset: the embedded SecantusDB server |
| ``DEFINET_DB`` | ``db`` | database name (``definet``) |
| ``DEFINET_DATA_DIR`` | ``data_dir`` | the embedded server's data directory (``~/.definet/db``) |
| ``DEFINET_DB_WAIT_S`` | ``db_wait_s`` | how long a command waits for another's embedded server (3600 s) |
| ``DEFINET_CACHE`` | ``cache`` | graph cache of the dataset reader (``~/.cache/definet/graphs``) |
| ``MP_API_KEY`` | ``mp_api_key`` | Materials Project key, for ``mp-`` ids not built offline |

Command-line options override them. ``definet_core`` stands alone without pydantic-settings: its dataset
reader reads ``DEFINET_CACHE`` itself (``definet_core.dataset.default_cache_dir``), the same variable.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from definet_core.dataset import default_cache_dir


class DefinetSettings(BaseSettings):
    """The environment's settings; empty variables count as unset."""

    model_config = SettingsConfigDict(env_prefix="DEFINET_", env_ignore_empty=True, extra="ignore")

    mongo_uri: str | None = None
    db: str = "definet"
    data_dir: Path = Path("~/.definet/db")
    db_wait_s: float = Field(3600.0, gt=0)
    cache: Path = Field(default_factory=default_cache_dir)
    mp_api_key: str | None = Field(None, validation_alias=AliasChoices("MP_API_KEY"))


def settings() -> DefinetSettings:
    """The settings as the environment holds them now (read on every call, so tests and long-lived processes
    see changes)."""
    return DefinetSettings()
