"""`trtforge explain`: per module and stage, up to date or which key fields changed; with --check,
a CI gate (WouldRebuild's exit code)."""

from __future__ import annotations

import click

from trtforge.cli.options import (
    backend_option,
    cache_dir_option,
    flags,
    json_option,
    manifest_arg,
    manifest_option,
    verbosity,
)
from trtforge.cli.output import finish
from trtforge.errors import TrtforgeError, WouldRebuild


@click.command()
@click.argument("manifest_path", required=False, type=click.Path(dir_okay=False))
@manifest_option
@click.option("--module", "modules", multiple=True, help="Explain only this module (repeatable).")
@backend_option
@cache_dir_option
@click.option(
    "--check",
    is_flag=True,
    help=f"A CI gate: exit 0 when everything is up to date, {WouldRebuild.exit_code} when something would be "
    "built or rebuilt, 2 when something cannot be planned (e.g. a depends pattern matching no file).",
)
@click.option("--target", "targets", multiple=True, help="Explain only this [targets.NAME] target (repeatable).")
@verbosity
@json_option("Print the verdicts as one JSON document on stdout (ok, exit_code, modules).")
@click.pass_context
def explain(ctx, manifest_path, manifest_opt, modules, backend, cache_dir, check, targets, as_json):
    """Say per module and stage whether it is up to date, or which key fields changed."""
    from trtforge.driver.api import explain_verdicts
    from trtforge.driver.explain import check_exit_code

    verbose, quiet = flags(ctx)["verbose"], flags(ctx)["quiet"]
    manifest_path = manifest_arg(manifest_path, manifest_opt)
    verdicts = explain_verdicts(manifest_path, modules, backend=backend, cache_dir=cache_dir, targets=targets)
    if not as_json and not quiet:
        for v in verdicts:
            click.echo(v.text)
    state = check_exit_code(verdicts)
    stale = sorted({v.module for v in verdicts if v.state in ("build", "rebuild")})
    failure: TrtforgeError | None = None
    if state == 2:  # a user mistake, with or without --check: never a silent 0
        failure = TrtforgeError(next(v for v in verdicts if v.state == "cannot plan").text)
    elif check and state:  # not an error: the answer to the question --check asks
        them = "them" if len(stale) > 1 else "it"
        failure = WouldRebuild(", ".join(stale), hint=f"`trtforge build` rebuilds {them}")
    by_module: dict[str, list] = {}
    if as_json:
        from dataclasses import asdict

        for v in verdicts:
            by_module.setdefault(v.module, []).append(asdict(v))
    finish(
        verbose,
        [{"name": m, "stages": vs} for m, vs in by_module.items()],
        failure,
        up_to_date=not stale and state == 0,
        would_build=stale,
    )
