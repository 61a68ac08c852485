"""The test suite. A package, so that `tests.support` imports from any test module."""
