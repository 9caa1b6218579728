"""`trtforge verify`: pre-deploy, check published engines on this machine (predeploy.py)."""

from __future__ import annotations

from pathlib import Path

import click

from trtforge.cli.options import check_junit, flags, json_option, verbosity
from trtforge.cli.output import finish
from trtforge.errors import PredeployFailed


@click.command()
@click.argument("engines_dir", default="engines", type=click.Path(file_okay=False))
@click.option(
    "--module",
    "modules",
    multiple=True,
    help="Check only this module's engines (repeatable): a name as build takes it, or TARGET/MODULE.",
)
@click.option("--target", "targets", multiple=True, help="Check only this target's engines (repeatable).")
@click.option("--require-engine-check", is_flag=True, help="Fail when an engine cannot run here.")
@click.option(
    "--junit",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write JUnit XML here: one test case per engine, with its time.",
)
@verbosity
@json_option("Print the results as one JSON document on stdout (ok, exit_code, modules: one per engine).")
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False),
    default=None,
    help="Fail unless index.json carries a signature this Ed25519 key verifies (PEM or OpenSSH).",
)
@click.pass_context
def verify(ctx, engines_dir, modules, targets, require_engine_check, junit, as_json, public_key):
    """Pre-deploy: check published engines on this machine against their bundled reference.
    ENGINES_DIR is the folder build published (with index.json) or one target's folder in it,
    also copied on its own."""
    from trtforge.driver.predeploy import PredeployRequest, verify_published

    notes: list[str] = []
    if junit:
        check_junit(Path(junit))
    key = None
    if public_key:
        from trtforge.engines_folder.signing import load_public_key

        key = load_public_key(Path(public_key))
    results: list[dict] = []
    request = PredeployRequest(
        Path(engines_dir), tuple(modules), tuple(targets), require_engine_check, junit, public_key=key
    )
    failed = verify_published(request, None if as_json or flags(ctx)["quiet"] else click.echo, results, notes)
    for note in notes:
        click.echo(f"trtforge: note: {note}", err=True)
    failure: PredeployFailed | None = None
    if failed:
        first = next(r for r in results if r["status"] == "failed")
        failure = PredeployFailed(
            f"{failed} of {len(results)} engine(s) failed pre-deploy verification; "
            f"first: {first.get('what', 'module')} '{first['module']}': {first['reason']}"
        )
    # "results" and "failed": the shape before `modules` (kept for scripts that read them);
    # `name` in each module, as every command's modules
    modules_out = [{"name": r["module"], **r} for r in results]
    finish(flags(ctx)["verbose"], modules_out, failure, failed=failed, notes=notes, results=results)
