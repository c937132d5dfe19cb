"""Test package (a package so that every conftest.py has a unique module name for mypy)."""
