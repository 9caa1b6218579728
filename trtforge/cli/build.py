"""`trtforge build`: parse the options into one BuildRequest (driver/request.py), call
driver/api.py, print the status table, notes, warnings and errors."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from trtforge.cli.options import (
    ENV_JOBS,
    ENV_OUTPUT,
    backend_option,
    cache_dir_option,
    check_junit,
    flags,
    json_option,
    manifest_arg,
    manifest_option,
    verbosity,
)
from trtforge.cli.output import finish, show
from trtforge.driver.request import SHARED_STAGES
from trtforge.driver.stages import STAGE_NAMES
from trtforge.errors import CacheError, TrtforgeError

# what the one interrupt handler (cli/__init__.py) adds for a build: nothing is left half-done
RESUMES = "nothing half-built was kept, the cache is intact and the next run resumes from the last finished stage"


@click.command()
@click.argument("manifest_path", required=False, type=click.Path(dir_okay=False))
@manifest_option
@click.option("--module", "modules", multiple=True, help="Build only this module (repeatable).")
@backend_option
@cache_dir_option
@click.option(
    "--output-dir",
    default=None,
    envvar=ENV_OUTPUT,
    show_envvar=True,
    type=click.Path(file_okay=False),
    help="Publish into this folder instead of the manifest's output_dir (relative to the current folder).",
)
@verbosity
@json_option("Print the report as one JSON document on stdout (ok, exit_code, modules); messages go to stderr.")
@click.option(
    "--junit",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write JUnit XML here: one test case per module, with its time.",
)
@click.option(
    "--require-engine-check",
    is_flag=True,
    help="Fail (exit 3, nothing published) when an engine cannot run on this machine.",
)
@click.option(
    "--jobs",
    "-j",
    default=1,
    type=click.IntRange(1),
    envvar=ENV_JOBS,
    show_envvar=True,
    help="Build this many modules at once (at most one per 2 CPU cores; see README).",
)
@click.option(
    "--allow-foreign-files",
    is_flag=True,
    help="Publish into an output folder that holds files trtforge did not write (left alone).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Re-run every stage (or, with --stage, that one and the later ones), ignoring cache hits.",
)
@click.option(
    "--stage",
    "force_stage",
    default=None,
    type=click.Choice(STAGE_NAMES),
    help="With --force: the first stage to re-run.",
)
@click.option(
    "--require-remote",
    is_flag=True,
    help="Fail (exit 2) when the remote cache cannot be used, instead of building locally.",
)
@click.option("--remote-read-only", is_flag=True, help="Download from the remote cache, never upload.")
@click.option("--no-remote", is_flag=True, help="Ignore the remote cache for this run.")
@click.option(
    "--target",
    "targets",
    multiple=True,
    help="Build only this [targets.NAME] target (repeatable; default: every target).",
)
@click.option(
    "--require-target",
    is_flag=True,
    help="Fail (exit 3) when a chosen target cannot be built here, instead of skipping it.",
)
@click.option(
    "--from-cache",
    is_flag=True,
    help="Assemble engines/ from the (shared) cache, building nothing; exit 3 naming what no runner has built yet.",
)
@click.option(
    "--max-memory",
    default=None,
    metavar="SIZE",
    help="Stop a stage whose processes pass this much memory (e.g. 16G; default: the machine's or cgroup's less a margin).",
)
@click.option(
    "--until",
    default=None,
    type=click.Choice(SHARED_STAGES),
    help="Run the stages every target shares up to this one, store (upload) them, publish nothing.",
)
@click.option(
    "--overlap/--no-overlap",
    default=False,
    help="Run verify's ONNX check while the engine builds, where the cores and the memory for both are there "
    "(faster; the two peaks add up, so it is off by default).",
)
@click.pass_context
def build(
    ctx,
    manifest_path,
    manifest_opt,
    modules,
    backend,
    cache_dir,
    output_dir,
    as_json,
    junit,
    require_engine_check,
    jobs,
    allow_foreign_files,
    force,
    force_stage,
    require_remote,
    remote_read_only,
    no_remote,
    targets,
    require_target,
    from_cache,
    max_memory,
    until,
    overlap,
):
    """Export, rewrite, keep FP32 islands, build, verify and publish every module."""
    verbose, quiet = flags(ctx)["verbose"], flags(ctx)["quiet"]
    manifest_path = manifest_arg(manifest_path, manifest_opt)
    if force_stage and not force:
        raise TrtforgeError("--stage needs --force", where="--stage", hint=f"write --force --stage {force_stage}")
    if from_cache and force:
        raise TrtforgeError(
            "--from-cache builds nothing; --force re-runs stages", where="--from-cache", hint="drop one of them"
        )
    from trtforge.processes import interrupts

    interrupts.install()
    from trtforge.driver.api import build as run_build
    from trtforge.driver.report import as_json as report_json
    from trtforge.driver.report import status_table
    from trtforge.driver.request import BuildRequest
    from trtforge.processes.progress import Progress

    def notes(result):
        for note in result.notes:
            click.echo(f"trtforge: note: {result.name}: {note}", err=True)

    progress = Progress(sys.stderr, enabled=not quiet and not as_json)
    ctx.call_on_close(progress.close)  # also after a failure or an interrupt, before its line
    flags(ctx)["interrupt_note"] = RESUMES
    if junit:
        check_junit(Path(junit))
    request = BuildRequest(
        modules=tuple(modules),
        targets=tuple(targets),
        backend=backend,
        cache_dir=cache_dir,
        output_dir=output_dir,
        jobs=jobs,
        require_engine_check=require_engine_check,
        require_target=require_target,
        allow_foreign_files=allow_foreign_files,
        force_from=(force_stage or "export") if force else None,
        remote=not no_remote,
        remote_read_only=remote_read_only,
        require_remote=require_remote,
        from_cache=from_cache,
        max_memory=max_memory,
        until=until,
        overlap=overlap,
    )
    outcome = run_build(
        manifest_path,
        request,
        progress=progress,
        on_result=notes,
        on_note=lambda text: click.echo(f"trtforge: note: {text}", err=True),
    )
    progress.close()
    for name in outcome.removed:
        click.echo(f"trtforge: note: {name}: no longer in the manifest; its engine was removed", err=True)
    if junit:
        from trtforge.driver.report.junit import build_cases, junit_xml

        Path(junit).write_text(junit_xml(build_cases(outcome.results), classname="trtforge.build"))
    if not as_json and not quiet:
        click.echo(status_table(outcome.results))
        for pipe in outcome.pipelines:  # [pipelines.NAME]: one line each (trtforge/pipelines/)
            click.echo(f"pipeline {pipe.name}: {pipe.state}" + (f" ({pipe.reason})" if pipe.reason else ""))
        click.echo(f"report: {outcome.report}  ({outcome.seconds:.2f}s)")
    for name, w in outcome.warnings:
        click.echo(f"trtforge: warning: module '{name}': {w}", err=True)
    errors = list(outcome.errors)
    if outcome.remote_failure:  # the build ran locally; the remote's failure is still an error
        from trtforge.cache.remote import HINT

        errors.append(CacheError(outcome.remote_failure, hint=HINT))
    for err in errors:
        show(err, verbose)
    report = report_json(outcome.results)
    finish(
        verbose,
        report.pop("modules"),
        max(errors, key=lambda e: e.exit_code) if errors else None,  # the exit code: the worst error's
        **report,
        removed=list(outcome.removed),
        warnings=[{"module": n, "text": w} for n, w in outcome.warnings],
        errors=[e.one_line() for e in outcome.errors]
        + ([f"cache: {outcome.remote_failure}"] if outcome.remote_failure else []),
        report=str(outcome.report),
        seconds=round(outcome.seconds, 3),
    )
