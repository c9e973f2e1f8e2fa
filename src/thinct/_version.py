"""The installed distribution's version, in a module of its own so that thinct's modules can
read it without importing the package root (which would tie them into import cycles)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("thinct")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
