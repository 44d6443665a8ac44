"""flight-delay: arrival-delay predictions for NYC flights, trained with Spark, served over HTTP."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("flight-delay")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
