"""The package version: `$lib_version` on every event and the `User-Agent` of every request."""

__version__ = "0.1.0"
LIB = "obs"  # the `$lib` of every event
