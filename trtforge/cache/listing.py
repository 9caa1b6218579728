"""`cache ls`: the rows of the local cache (manage.listing) or of a remote's records, summed per
module for the JSON document, and the table the command prints."""

from __future__ import annotations

from collections.abc import Iterable


def remote_rows(docs: Iterable[dict]) -> list[dict]:
    """One row per remote record document, oldest first, as manage.listing's rows."""
    return sorted(
        (
            {
                "key": d["key"],
                "stage": d["stage"],
                "module": d.get("module") or "-",
                "bytes": sum(o["size"] for o in d["outputs"].values()),
                "created": d["created"],
                "digests": {o["digest"]: o["size"] for o in d["outputs"].values()},
            }
            for d in docs
        ),
        key=lambda r: r["created"],
    )


def blobs(rows: list[dict]) -> dict[str, int]:
    """digest -> size over the rows: a blob shared by records counts once."""
    return {d: n for r in rows for d, n in r["digests"].items()}


def by_module(rows: list[dict]) -> list[dict]:
    """Records summed per module, for the JSON document's `modules`."""
    out: dict[str, dict] = {}
    for r in rows:
        m = out.setdefault(r["module"], {"name": r["module"], "records": 0, "bytes": 0})
        m["records"] += 1
        m["bytes"] += r["bytes"]
    return list(out.values())


def table(rows: list[dict], now: float) -> list[str]:
    """KEY, MODULE, STAGE, SIZE, AGE per row, then the total."""
    shared = blobs(rows)
    width = max([len("MODULE"), *(len(r["module"]) for r in rows)])
    lines = [f"{'KEY':<16}  {'MODULE':<{width}}  {'STAGE':<16} {'SIZE':>12}  {'AGE':>8}"]
    for r in rows:
        lines.append(
            f"{r['key'][:16]}  {r['module']:<{width}}  {r['stage']:<16} {r['bytes'] / 1e6:9.2f} MB  "
            f"{(now - r['created']) / 3600:6.1f} h"
        )
    lines.append(f"{len(rows)} record(s), {sum(shared.values()) / 1e6:.2f} MB in {len(shared)} blob(s)")
    return lines
