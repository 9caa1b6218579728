"""JUnit XML for CI dashboards: `trtforge build --junit` (one test case per module) and
`trtforge verify --junit` (one per published engine). Each case carries its `time` in seconds, the
suite the total: GitLab, Jenkins and GitHub test reporters chart those."""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import quoteattr


@dataclass(frozen=True)
class Case:
    name: str
    status: str  # ok | failed | not run
    seconds: float = 0.0
    reason: str = ""


def junit_xml(cases: list[Case], classname: str, suite: str = "trtforge") -> str:
    lines = []
    for c in cases:
        body = ""
        if c.status == "failed":
            body = f"<failure message={quoteattr(c.reason)}/>"
        elif c.status == "not run":
            body = f"<skipped message={quoteattr(c.reason)}/>"
        lines.append(
            f"  <testcase classname={quoteattr(classname)} name={quoteattr(c.name)} "
            f'time="{c.seconds:.3f}">{body}</testcase>'
        )
    failures = sum(c.status == "failed" for c in cases)
    skipped = sum(c.status == "not run" for c in cases)
    total = sum(c.seconds for c in cases)
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<testsuite name={quoteattr(suite)} tests="{len(cases)}" '
        f'failures="{failures}" skipped="{skipped}" time="{total:.3f}">\n' + "\n".join(lines) + "\n</testsuite>\n"
    )


def build_cases(results) -> list[Case]:
    """One case per module of a build (driver ModuleResults): its time is what this run spent on
    it (0 for a module answered from the cache); a failure carries the failing stage's reason."""
    cases = []
    for r in results:
        failed = next((s for s, st in r.stages.items() if st.state == "failed"), None)
        reason = f"{failed}: {r.stages[failed].reason}" if failed else ""
        cases.append(
            Case(
                r.name,
                "failed" if r.error is not None else "ok",
                round(sum(st.seconds for st in r.stages.values()), 3),
                reason,
            )
        )
    return cases
