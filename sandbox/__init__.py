"""A faithful local implementation of the Overten generation API contract (../shared/upstream-api).

It never imports the relay; the two talk HTTP only.
"""

from .app import create_app
from .config import SandboxConfig

__all__ = ["SandboxConfig", "create_app"]
