"""The Dockyard agent: one per Docker host, converging the engine to the controller's plan."""

__version__ = "0.1.0"
