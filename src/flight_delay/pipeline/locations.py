"""Where data lives: a local path, or a URI that Spark's readers and writers open (s3a://, hdfs://, file://).

A URI never goes through pathlib, which would turn `s3a://bucket/x.csv` into `s3a:/bucket/x.csv`.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit
from urllib.request import url2pathname

Location = str | Path


def scheme(location: Location) -> str:
    """Returns a location's URI scheme in lower case, or "" for a plain path."""
    if isinstance(location, Path):
        return ""
    found = urlsplit(location).scheme.lower()
    # One letter is a Windows drive (C:\data), not a scheme.
    return found if len(found) > 1 else ""


def local_path(location: Location) -> Path | None:
    """Returns the local file a plain path or a file:// URI names, None for any other scheme."""
    found = scheme(location)
    if not found:
        return Path(location)
    if found == "file":
        return Path(url2pathname(urlsplit(str(location)).path))
    return None


def spark_location(location: Location) -> str:
    """Returns the location as Spark should open it: a local path as an absolute file:// URI."""
    path = local_path(location)
    # Without a scheme Spark would resolve the path on the cluster's default file system (HDFS on
    # YARN); unencoded, because Hadoop's Path reads "%20" literally.
    return str(location) if path is None else f"file://{path.absolute()}"


def location_name(location: Location) -> str:
    """Returns the last segment of a location's path (the file or folder name)."""
    path = local_path(location)
    return path.name if path is not None else PurePosixPath(urlsplit(str(location)).path).name
