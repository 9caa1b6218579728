"""`trtforge cache ls|push|pull|verify|gc`: the artifact cache, local or remote (cache/)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from trtforge.cli.options import ENV_CACHE, flags, json_option, verbosity
from trtforge.cli.output import finish
from trtforge.errors import CacheDamaged, TrtforgeError


@click.group()
@verbosity
def cache():
    """Inspect and manage the artifact cache."""


def _store(manifest, cache_dir: str | None, writable: bool = True):
    from trtforge.driver.api import open_store

    return open_store(manifest, cache_dir, writable)


def _cache_store(manifest_path, cache_dir, writable=True):
    from trtforge.cache import Store
    from trtforge.manifest import load_manifest

    if cache_dir or os.environ.get(ENV_CACHE):
        return Store(Path(cache_dir or os.environ[ENV_CACHE]), writable=writable)
    return _store(load_manifest(manifest_path), None, writable)


def _remote_store(manifest_path, cache_dir, writable=True):
    """The local store with the remote attached, connected now (a failure is one line, exit 2)."""
    from trtforge.cache.remote import open_remote
    from trtforge.manifest import load_manifest

    manifest = load_manifest(manifest_path) if Path(manifest_path).exists() else None
    # the remote cache of the manifest or $TRTFORGE_REMOTE_CACHE (None: none)
    remote = open_remote(manifest.cache if manifest is not None else None)
    if remote is None:
        from trtforge.cache.remote import ENV_URL

        raise TrtforgeError(
            "no remote cache is configured", where="--remote", hint=f"set [cache] remote in the manifest or ${ENV_URL}"
        )
    remote.check()
    store = (
        _cache_store(manifest_path, cache_dir, writable)
        if manifest is None or cache_dir or os.environ.get(ENV_CACHE)
        else _store(manifest, None, writable)
    )
    return store, remote


_cache_opts = [
    click.option(
        "--cache-dir", default=None, help=f"The cache folder (or ${ENV_CACHE}).", envvar=ENV_CACHE, show_envvar=True
    ),
    click.option(
        "-m",
        "--manifest",
        "manifest_path",
        default="engines.toml",
        help="The manifest whose cache_dir to use when no --cache-dir is given.",
    ),
    verbosity,
    json_option("Print the result as one JSON document on stdout (ok, exit_code, modules)."),
]


def _with_cache_opts(f):
    for opt in reversed(_cache_opts):
        f = opt(f)
    return f


def _notes(notes) -> None:
    for note in notes:
        click.echo(f"trtforge: note: {note}", err=True)


@cache.command("ls")
@_with_cache_opts
@click.option("--remote", "remote", is_flag=True, help="List the remote cache's records instead.")
@click.pass_context
def cache_ls(ctx, cache_dir, manifest_path, remote, as_json):
    """List cache records (oldest first): key, module, stage, size, age; then the total."""
    from trtforge.cache.listing import blobs, by_module, remote_rows, table
    from trtforge.cache.manage import listing

    damaged: list = []
    if remote:
        _, rem = _remote_store(manifest_path, cache_dir, writable=False)
        docs = list(rem.records())
        rem.check()
        _notes(rem.take_notes())
        rows = remote_rows(docs)
    else:
        rows = listing(_cache_store(manifest_path, cache_dir, writable=False).root, damaged)  # no writes
    _notes(
        f"damaged cache record {path.name[:16]} ignored ({reason}); `trtforge cache verify` removes it"
        for path, reason in damaged
    )
    if not as_json:
        for line in table(rows, time.time()):
            click.echo(line)
    shared = blobs(rows)
    records = [{k: v for k, v in r.items() if k != "digests"} for r in rows]
    finish(flags(ctx)["verbose"], by_module(rows), records=records, blobs=len(shared), bytes=sum(shared.values()))


@cache.command("push")
@_with_cache_opts
@click.option("--remote", "_remote_flag", is_flag=True, help="(implied) push to the remote cache.")
@click.pass_context
def cache_push(ctx, cache_dir, manifest_path, _remote_flag, as_json):
    """Upload every local record the remote cache lacks (blobs first, the record last)."""
    store, remote = _remote_store(manifest_path, cache_dir)
    if not remote.writable:
        raise TrtforgeError(
            "the remote cache is read-only here",
            where=remote.config.url,
            hint="unset $TRTFORGE_REMOTE_CACHE_MODE / [cache] read_only to push",
        )
    from trtforge.cache.manage import push_all

    pushed, skipped = push_all(store, remote)
    if not as_json and not flags(ctx)["quiet"]:
        click.echo(f"pushed {pushed} record(s), {skipped} already there ({remote.stats.bytes_up / 1e6:.1f} MB up)")
    finish(flags(ctx)["verbose"], [], pushed=pushed, present=skipped, bytes_up=remote.stats.bytes_up)


@cache.command("pull")
@_with_cache_opts
@click.option("--remote", "_remote_flag", is_flag=True, help="(implied) pull from the remote cache.")
@click.pass_context
def cache_pull(ctx, cache_dir, manifest_path, _remote_flag, as_json):
    """Download every remote record the local cache lacks, each object checked by digest."""
    store, remote = _remote_store(manifest_path, cache_dir)
    from trtforge.cache.manage import pull_all

    pulled, present = pull_all(store, remote)
    _notes(remote.take_notes())
    if not as_json and not flags(ctx)["quiet"]:
        click.echo(f"pulled {pulled} record(s), {present} already here ({remote.stats.bytes_down / 1e6:.1f} MB down)")
    finish(flags(ctx)["verbose"], [], pulled=pulled, present=present, bytes_down=remote.stats.bytes_down)


@cache.command("verify")
@_with_cache_opts
@click.pass_context
def cache_verify(ctx, cache_dir, manifest_path, as_json):
    """Re-hash every blob (ignoring the stat memo); drop the corrupt ones."""
    problems = _cache_store(manifest_path, cache_dir).verify_all()
    if not as_json:
        for p in problems:
            click.echo(p)
        click.echo(f"{len(problems)} problem(s)")
    failure = CacheDamaged(f"{len(problems)} problem(s)") if problems else None
    finish(flags(ctx)["verbose"], [], failure, problems=[str(p) for p in problems])


@cache.command("gc")
@_with_cache_opts
@click.option(
    "--max-size",
    default=None,
    help="Drop the oldest records (the last build's last) until the blobs fit in this size (e.g. 20G, 500M).",
)
@click.option(
    "--older-than",
    default=None,
    help="Drop records created longer ago than this, except the last build's (e.g. 30d, 12h).",
)
@click.pass_context
def cache_gc(ctx, cache_dir, manifest_path, max_size, older_than, as_json):
    """Drop old records and unreferenced blobs."""
    from trtforge.cache.manage import parse_age, parse_size

    store = _cache_store(manifest_path, cache_dir)
    out = store.gc(
        None if max_size is None else parse_size(max_size, "--max-size"),
        None if older_than is None else parse_age(older_than, "--older-than"),
    )
    if not as_json and not flags(ctx)["quiet"]:
        click.echo(f"removed {out['records_removed']} record(s), freed {out['bytes_freed'] / 1e6:.1f} MB")
    finish(flags(ctx)["verbose"], [], **out)
