"""The bad-input corpus's case tables and helpers (run by tests/test_bad_inputs.py)."""
