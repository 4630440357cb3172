"""cryodyna: conformational dynamics from cryo-EM particle images with physics-aware priors."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cryodyna")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
