"""What the benchmark scripts share (they run as scripts: ``python bench/<name>.py``)."""

from __future__ import annotations

from importlib import metadata


def version(package: str) -> str:
    """An installed package's version, for the host line every benchmark prints."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"
