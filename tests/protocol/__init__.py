"""Sans-IO protocol core tests."""
