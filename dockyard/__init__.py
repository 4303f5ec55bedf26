"""Dockyard: an ECS-style container orchestrator (shared code, CLI and generated wire stubs)."""

__version__ = "0.1.0"
