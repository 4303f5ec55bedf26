"""The web console at /ui/ on the controller's HTTP port (issue 20): see controller.console.web."""

from controller.console.web import ConsoleDeps, UsageSource, install

__all__ = ["ConsoleDeps", "UsageSource", "install"]
