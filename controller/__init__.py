"""The Dockyard controller: cluster state, placement, the agent dispatcher and the APIs."""
