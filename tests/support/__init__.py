"""Helpers shared by the tests (importable by worker processes too: ``tests.support``)."""
