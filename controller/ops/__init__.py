"""ECS operations grouped per resource (account settings, clusters' configuration, service
deployments and revisions), each module exposing `handlers()` for ClusterService's one
dispatch table."""
