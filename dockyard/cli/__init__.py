"""The `dockyard` command: daemons, operator commands and the lab, one install for all."""
