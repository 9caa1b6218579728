"""CLI tests of issue 17 (inspect, export, CI gates, first paths) share the end-to-end tests' one
build of the example manifest (tests/e2e/conftest.py)."""

from tests.e2e.conftest import built_examples  # noqa: F401 - the session fixture, shared
