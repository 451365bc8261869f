"""The operator engine: runs compute jobs in isolated containers through Ocean's statuses."""
