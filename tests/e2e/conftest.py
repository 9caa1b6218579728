"""The end-to-end modules share one real build of the example manifest: `built_examples`, in
tests/conftest.py (tests/cli uses it too, and a session fixture defined there is built once)."""

from __future__ import annotations


def module_report(report: dict, name: str) -> dict:
    return next(m for m in report["modules"] if m["name"] == name)
