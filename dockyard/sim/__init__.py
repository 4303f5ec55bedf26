"""Simulated agents: the real agent protocol without Docker, thousands per process."""
