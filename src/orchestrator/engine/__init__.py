"""The rules: accounts, tasks, workflows, dispatch, leases and events."""
