"""Capacity providers on the operator's own machines (issue 22): a provider is tied to a
host group whose size an operator's command changes. `reservation` and `strategy` are pure;
`provider` holds the stored objects; `driver` runs the group-size command."""
