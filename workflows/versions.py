"""Installed package versions, as the documents record them."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version(distribution: str) -> str | None:
    """Installed version of ``distribution``, or None where it is not installed."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def definet_version() -> str:
    """The installed definet package's version ("unknown" when it is not installed)."""
    return package_version("definet") or "unknown"
