"""The tiny one-module project of tests/cache (a 2-layer MLP; a full build takes seconds)."""

from tests.cache.conftest import _built_once, _republish_once, built_project, republish_project, tiny_project  # noqa: F401  (fixtures)
