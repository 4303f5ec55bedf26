"""ECS and Dockyard operations grouped per resource, listed in one table (`table.py`) and
called through one chain (`chain.py`: validation, the handler, after-steps). The modules
here work over a narrow context (`context.OpsContext`): account settings, clusters'
configuration, service deployments and revisions, tags, task definitions' own rows."""
