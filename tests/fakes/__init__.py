"""Stand-ins for the outside world (Dispatcharr) used by tests."""
