"""portal — the front door: the web app, the REST API and the `yinxin` CLI.

The only package that imports Flask, and the one place that composes the packages
below it from the instance's settings.
"""

from portal.app import create_app
from portal.config import Settings, resolve_settings

__all__ = ["Settings", "create_app", "resolve_settings"]
