"""The `trtforge` command. Only this module maps errors to exit codes:
0 ok, 1 a bug (traceback kept), 2 a user error (one line), 3 verification failed, 130 interrupted."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from trtforge.cli_output import EXIT_WOULD_REBUILD, JSON_OUT, document
from trtforge.driver.stages import STAGE_NAMES
from trtforge.errors import TrtforgeError

ENV_CACHE = "TRTFORGE_CACHE_DIR"  # the same names as trtforge.driver.api's (not imported: startup cost)
ENV_BACKEND, ENV_JOBS, ENV_OUTPUT = "TRTFORGE_BACKEND", "TRTFORGE_JOBS", "TRTFORGE_OUTPUT_DIR"
BACKEND_CHOICE = click.Choice(["auto", "tensorrt", "tensorrt-rtx"])


def _error_line(e: TrtforgeError, verbose: bool) -> None:
    stage = f"{e.stage}: " if e.stage != TrtforgeError.stage else ""  # which stage failed
    line = f"trtforge: error: {stage}{e.one_line()}"
    click.echo(line, err=True)
    JSON_OUT.error = line
    if verbose:
        from trtforge.errors import cause_text

        # a cause raised in a stage's child process arrives as text (errors.__reduce__)
        text = cause_text(e.__cause__) if e.__cause__ is not None else getattr(e, "cause_text", None)
        if text:
            click.echo(f"  cause: {text}", err=True)


def _fail(e: TrtforgeError, verbose: bool) -> None:
    _error_line(e, verbose)
    JSON_OUT.send(document(e.exit_code, [], error=JSON_OUT.error))
    sys.exit(e.exit_code)


def _flags(ctx) -> dict:
    """The run's flags: -v/--verbose and -q/--quiet, given before or after the subcommand."""
    root = ctx.find_root()
    if root.obj is None:
        root.obj = {"verbose": False, "quiet": False}
    return root.obj


def _set_flag(name: str):
    def callback(ctx, _param, value):
        if value:
            _flags(ctx)[name] = True

    return callback


def _verbosity(f):
    """-v/--verbose and -q/--quiet on every subcommand (also accepted before it)."""
    f = click.option(
        "-q",
        "--quiet",
        is_flag=True,
        expose_value=False,
        callback=_set_flag("quiet"),
        help="Print only warnings, errors and the result asked for.",
    )(f)
    return click.option(
        "-v",
        "--verbose",
        is_flag=True,
        expose_value=False,
        callback=_set_flag("verbose"),
        help="Add the underlying cause to error lines.",
    )(f)


def _json_option(help_text: str):
    def start(_ctx, _param, value):
        if value:  # from now on fd 1 is stderr: only the document reaches stdout
            JSON_OUT.start()
        return value

    return click.option("--json", "as_json", is_flag=True, callback=start, is_eager=True, help=help_text)


def _manifest_option(f):
    return click.option(
        "-m",
        "--manifest",
        "manifest_opt",
        default=None,
        type=click.Path(dir_okay=False),
        help="The manifest (default: engines.toml).",
    )(f)


def _manifest(positional: str | None, option: str | None, verbose: bool = False) -> str:
    """-m/--manifest, or the positional form kept as an alias; both must agree."""
    if positional and option and Path(positional) != Path(option):
        _fail(
            TrtforgeError(
                f"two manifests given: '{positional}' and -m '{option}'",
                where="-m/--manifest",
                hint="pass the manifest once, as -m FILE",
            ),
            verbose,
        )
    return option or positional or "engines.toml"


def _store(manifest, cache_dir: str | None, writable: bool = True, remote=None):
    from trtforge.driver.api import open_store

    return open_store(manifest, cache_dir, writable, remote=remote)


def _remote(manifest):
    """The remote cache of the manifest or $TRTFORGE_REMOTE_CACHE (None: none)."""
    from trtforge.cache.remote import open_remote

    return open_remote(manifest.cache if manifest is not None else None)


class _Group(click.Group):
    """Click's own usage errors (a bad option value, an unknown command or flag, a folder where a
    file is due) as one `trtforge: error:` line and exit 2, like every other user mistake,
    instead of Click's three lines of usage."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:  # a caller that handles the outcome; fd 1 is still put back
            try:
                return super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[call-overload]
            finally:
                JSON_OUT.finish(1 if sys.exc_info()[0] is not None else 0)
        error = None
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[call-overload]
            code = rv if isinstance(rv, int) else 0
        except click.ClickException as e:
            ctx = getattr(e, "ctx", None)  # usage errors carry the command they concern
            path = ctx.command_path if ctx is not None else "trtforge"
            error = " ".join(f"trtforge: error: {e.format_message().rstrip('.')}; see '{path} --help'".split())
            click.echo(error, err=True)
            argv = args[0] if args and args[0] is not None else sys.argv[1:]
            if "--json" in argv:  # the flag asked for a document: a usage error is one too
                JSON_OUT.start()
            code = 2
        except click.Abort:
            error = "trtforge: error: interrupted"
            click.echo(error, err=True)
            code = 130
        except SystemExit as e:
            JSON_OUT.finish(e.code if isinstance(e.code, int) else int(e.code is not None))
            raise
        except BaseException:  # a bug: its traceback on stderr, still one document on stdout
            JSON_OUT.finish(1, "trtforge: error: a bug in trtforge (traceback on stderr)")
            raise
        JSON_OUT.finish(code, error)
        sys.exit(code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Add the underlying cause to error lines.")
@click.option("-q", "--quiet", is_flag=True, help="Print only warnings, errors and the result asked for.")
@click.version_option(package_name="trtforge", prog_name="trtforge", message="%(prog)s %(version)s")
@click.pass_context
def main(ctx, verbose, quiet):
    """trtforge: PyTorch modules -> verified TensorRT / TensorRT-RTX engines, incrementally."""
    ctx.obj = {"verbose": verbose, "quiet": quiet}


def _backend_option(f):
    return click.option(
        "--backend",
        type=BACKEND_CHOICE,
        default=None,
        envvar=ENV_BACKEND,
        show_envvar=True,
        help="Override every module's build.backend.",
    )(f)


def _cache_dir_option(f):
    return click.option(
        "--cache-dir",
        default=None,
        envvar=ENV_CACHE,
        show_envvar=True,
        help="Cache folder (default: the manifest's cache_dir).",
    )(f)


@main.command()
@click.argument("manifest_path", required=False, type=click.Path(dir_okay=False))
@_manifest_option
@click.option("--module", "modules", multiple=True, help="Build only this module (repeatable).")
@_backend_option
@_cache_dir_option
@click.option(
    "--output-dir",
    default=None,
    envvar=ENV_OUTPUT,
    show_envvar=True,
    type=click.Path(file_okay=False),
    help="Publish into this folder instead of the manifest's output_dir (relative to the current folder).",
)
@_verbosity
@_json_option("Print the report as one JSON document on stdout (ok, exit_code, modules); messages go to stderr.")
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
    type=click.Choice(["export", "graph_passes", "precision_rules"]),
    help="Run the stages every target shares up to this one, store (upload) them, publish nothing.",
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
):
    """Export, rewrite, keep FP32 islands, build, verify and publish every module."""
    verbose, quiet = ctx.obj["verbose"], ctx.obj["quiet"]
    manifest_path = _manifest(manifest_path, manifest_opt, verbose)
    if force_stage and not force:
        _fail(
            TrtforgeError("--stage needs --force", where="--stage", hint=f"write --force --stage {force_stage}"),
            verbose,
        )
    if from_cache and force:
        _fail(
            TrtforgeError(
                "--from-cache builds nothing; --force re-runs stages", where="--from-cache", hint="drop one of them"
            ),
            verbose,
        )
    from trtforge import interrupts

    interrupts.install()
    from trtforge.driver.api import build as run_build
    from trtforge.driver.request import BuildRequest
    from trtforge.progress import Progress
    from trtforge.report import as_json as report_json
    from trtforge.report import status_table

    def notes(result):
        for note in result.notes:
            click.echo(f"trtforge: note: {result.name}: {note}", err=True)

    progress = Progress(sys.stderr, enabled=not quiet and not as_json)
    try:
        if junit:
            _check_junit(Path(junit))
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
        )
        outcome = run_build(
            manifest_path,
            request,
            progress=progress,
            on_result=notes,
            on_note=lambda text: click.echo(f"trtforge: note: {text}", err=True),
        )
    except TrtforgeError as e:
        _fail(e, verbose)
    except KeyboardInterrupt as e:
        progress.close()
        from trtforge.interrupts import Interrupted

        code = e.exit_code if isinstance(e, Interrupted) else 130
        name = "SIGTERM" if code == 143 else "Ctrl-C"
        click.echo(
            f"trtforge: error: interrupted ({name}); nothing half-built was kept, the cache is intact "
            "and the next run resumes from the last finished stage",
            err=True,
        )
        sys.exit(code)
    progress.close()
    for name in outcome.removed:
        click.echo(f"trtforge: note: {name}: no longer in the manifest; its engine was removed", err=True)
    if junit:
        from trtforge.junit import build_cases, junit_xml

        Path(junit).write_text(junit_xml(build_cases(outcome.results), classname="trtforge.build"))
    code = outcome.exit_code if outcome.errors or outcome.remote_failure else 0
    if not as_json and not quiet:
        click.echo(status_table(outcome.results))
        for pipe in outcome.pipelines:  # [pipelines.NAME]: one line each (trtforge/pipelines/)
            click.echo(f"pipeline {pipe.name}: {pipe.state}" + (f" ({pipe.reason})" if pipe.reason else ""))
        click.echo(f"report: {outcome.report}  ({outcome.seconds:.2f}s)")
    for name, w in outcome.warnings:
        click.echo(f"trtforge: warning: module '{name}': {w}", err=True)
    for err in outcome.errors:
        _error_line(err, verbose)
    if outcome.remote_failure:  # the build ran locally; the remote's failure is still an error
        from trtforge.cache.remote import HINT

        click.echo(f"trtforge: error: cache: {outcome.remote_failure}; {HINT}", err=True)
    if as_json:
        report = report_json(outcome.results)
        errors = [e.one_line() for e in outcome.errors]
        if outcome.remote_failure:
            errors.append(f"cache: {outcome.remote_failure}")
        JSON_OUT.send(
            document(
                code,
                report.pop("modules"),
                **report,
                removed=list(outcome.removed),
                warnings=[{"module": n, "text": w} for n, w in outcome.warnings],
                errors=errors,
                report=str(outcome.report),
                **({"error": JSON_OUT.error} if code and JSON_OUT.error else {}),
                seconds=round(outcome.seconds, 3),
            )
        )
    if code:
        sys.exit(code)


@main.command()
@click.argument("manifest_path", required=False, type=click.Path(dir_okay=False))
@_manifest_option
@click.option("--module", "modules", multiple=True, help="Explain only this module (repeatable).")
@_backend_option
@_cache_dir_option
@click.option(
    "--check",
    is_flag=True,
    help=f"A CI gate: exit 0 when everything is up to date, {EXIT_WOULD_REBUILD} when something would be "
    "built or rebuilt, 2 when something cannot be planned (e.g. a depends pattern matching no file).",
)
@click.option("--target", "targets", multiple=True, help="Explain only this [targets.NAME] target (repeatable).")
@_verbosity
@_json_option("Print the verdicts as one JSON document on stdout (ok, exit_code, modules).")
@click.pass_context
def explain(ctx, manifest_path, manifest_opt, modules, backend, cache_dir, check, targets, as_json):
    """Say per module and stage whether it is up to date, or which key fields changed."""
    from trtforge.driver.api import explain_verdicts
    from trtforge.driver.explain import check_exit_code

    verbose, quiet = ctx.obj["verbose"], ctx.obj["quiet"]
    manifest_path = _manifest(manifest_path, manifest_opt, verbose)
    try:
        verdicts = explain_verdicts(manifest_path, modules, backend=backend, cache_dir=cache_dir, targets=targets)
    except TrtforgeError as e:
        _fail(e, verbose)
    if not as_json and not quiet:
        for v in verdicts:
            click.echo(v.text)
    state = check_exit_code(verdicts)
    stale = sorted({v.module for v in verdicts if v.state in ("build", "rebuild")})
    code = 2 if state == 2 else EXIT_WOULD_REBUILD if check and state else 0
    if state == 2:  # a user mistake, with or without --check: never a silent 0
        first = next(v for v in verdicts if v.state == "cannot plan")
        click.echo(f"trtforge: error: {first.text}", err=True)
        JSON_OUT.error = f"trtforge: error: {first.text}"
    elif code:  # not an error: the answer to the question --check asks
        click.echo(f"trtforge: not up to date: {', '.join(stale)}; `trtforge build` rebuilds it", err=True)
    if as_json:
        from dataclasses import asdict

        by_module: dict[str, list] = {}
        for v in verdicts:
            by_module.setdefault(v.module, []).append(asdict(v))
        JSON_OUT.send(
            document(
                code,
                [{"name": m, "stages": vs} for m, vs in by_module.items()],
                up_to_date=not stale and state == 0,
                would_build=stale,
                **({"error": JSON_OUT.error} if state == 2 else {}),
            )
        )
    if code:
        sys.exit(code)


@main.command()
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
@_verbosity
@_json_option("Print the results as one JSON document on stdout (ok, exit_code, modules: one per engine).")
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
    from trtforge.predeploy import verify_published

    quiet = ctx.obj["quiet"]
    notes: list[str] = []
    try:
        if junit:
            _check_junit(Path(junit))
        key = None
        if public_key:
            from trtforge.signing import load_public_key

            key = load_public_key(Path(public_key))
        results: list[dict] = []
        failed = verify_published(
            Path(engines_dir),
            require_engine_check,
            junit,
            None if as_json or quiet else click.echo,
            results,
            modules,
            key,
            targets=targets,
            notes=notes,
        )
    except TrtforgeError as e:
        _fail(e, ctx.obj["verbose"])
    for note in notes:
        click.echo(f"trtforge: note: {note}", err=True)
    if failed:
        first = next(r for r in results if r["status"] == "failed")
        JSON_OUT.error = (
            f"trtforge: error: {failed} of {len(results)} engine(s) failed pre-deploy verification; "
            f"first: {first.get('what', 'module')} '{first['module']}': {first['reason']}"
        )
        click.echo(JSON_OUT.error, err=True)
    if as_json:
        # "results" and "failed": the shape before `modules` (kept for scripts that read them)
        code = 3 if failed else 0
        error = {"error": JSON_OUT.error} if failed else {}
        modules = [{"name": r["module"], **r} for r in results]  # `name`, as every command's modules
        JSON_OUT.send(document(code, modules, failed=failed, notes=notes, results=results, **error))
    if failed:
        sys.exit(3)


def _check_junit(path: Path) -> None:
    """The JUnit report's folder must be (or become) a writable folder: found now, before any
    engine is checked, not as a traceback after."""
    hint = "pass --junit a file path in a writable folder"
    parent = path.parent
    for folder in (parent, *parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise TrtforgeError(f"'{folder}' is not a folder", where=f"--junit {path}", hint=hint)
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrtforgeError(f"cannot create '{parent}': {e.strerror}", where=f"--junit {path}", hint=hint) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise TrtforgeError(f"'{parent}' is not writable", where=f"--junit {path}", hint=hint)


@main.group()
@_verbosity
def cache():
    """Inspect and manage the artifact cache."""


def _cache_store(manifest_path, cache_dir, writable=True):
    from trtforge.cache import Store
    from trtforge.manifest import load_manifest

    if cache_dir or os.environ.get(ENV_CACHE):
        return Store(Path(cache_dir or os.environ[ENV_CACHE]), writable=writable)
    return _store(load_manifest(manifest_path), None, writable)


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
    _verbosity,
    _json_option("Print the result as one JSON document on stdout (ok, exit_code, modules)."),
]


def _with_cache_opts(f):
    for opt in reversed(_cache_opts):
        f = opt(f)
    return f


def _by_module(rows: list[dict]) -> list[dict]:
    """Cache records summed per module, for the JSON document's `modules`."""
    out: dict[str, dict] = {}
    for r in rows:
        m = out.setdefault(r["module"], {"name": r["module"], "records": 0, "bytes": 0})
        m["records"] += 1
        m["bytes"] += r["bytes"]
    return list(out.values())


@cache.command("ls")
@_with_cache_opts
@click.option("--remote", "remote", is_flag=True, help="List the remote cache's records instead.")
@click.pass_context
def cache_ls(ctx, cache_dir, manifest_path, remote, as_json):
    """List cache records (oldest first): key, module, stage, size, age; then the total."""
    try:
        if remote:
            _, rem = _remote_store(manifest_path, cache_dir, writable=False)
            docs = [(d, None) for d in rem.records()]
            rem.check()
        else:
            store = _cache_store(manifest_path, cache_dir, writable=False)  # listing needs no writes
    except TrtforgeError as e:
        _fail(e, ctx.obj["verbose"])
    from trtforge.cache.manage import listing

    now, damaged = time.time(), []
    if remote:
        for note in rem.take_notes():
            click.echo(f"trtforge: note: {note}", err=True)
        rows = sorted(
            (
                {
                    "key": d["key"],
                    "stage": d["stage"],
                    "module": d.get("module") or "-",
                    "bytes": sum(o["size"] for o in d["outputs"].values()),
                    "created": d["created"],
                    "digests": {o["digest"]: o["size"] for o in d["outputs"].values()},
                }
                for d, _ in docs
            ),
            key=lambda r: r["created"],
        )
    else:
        rows = listing(store.root, damaged)
    blobs = {d: n for r in rows for d, n in r["digests"].items()}  # a blob shared by records counts once
    for path, reason in damaged:
        click.echo(
            f"trtforge: note: damaged cache record {path.name[:16]} ignored ({reason}); "
            "`trtforge cache verify` removes it",
            err=True,
        )
    if as_json:
        records = [{k: v for k, v in r.items() if k != "digests"} for r in rows]
        JSON_OUT.send(document(0, _by_module(rows), records=records, blobs=len(blobs), bytes=sum(blobs.values())))
        return
    width = max([len("MODULE"), *(len(r["module"]) for r in rows)])
    click.echo(f"{'KEY':<16}  {'MODULE':<{width}}  {'STAGE':<16} {'SIZE':>12}  {'AGE':>8}")
    for r in rows:
        click.echo(
            f"{r['key'][:16]}  {r['module']:<{width}}  {r['stage']:<16} {r['bytes'] / 1e6:9.2f} MB  "
            f"{(now - r['created']) / 3600:6.1f} h"
        )
    click.echo(f"{len(rows)} record(s), {sum(blobs.values()) / 1e6:.2f} MB in {len(blobs)} blob(s)")


def _remote_store(manifest_path, cache_dir, writable=True):
    """The local store with the remote attached, connected now (a failure is one line, exit 2)."""
    from trtforge.manifest import load_manifest

    manifest = load_manifest(manifest_path) if Path(manifest_path).exists() else None
    remote = _remote(manifest)
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


@cache.command("push")
@_with_cache_opts
@click.option("--remote", "_remote_flag", is_flag=True, help="(implied) push to the remote cache.")
@click.pass_context
def cache_push(ctx, cache_dir, manifest_path, _remote_flag, as_json):
    """Upload every local record the remote cache lacks (blobs first, the record last)."""
    try:
        store, remote = _remote_store(manifest_path, cache_dir)
        if not remote.writable:
            raise TrtforgeError(
                "the remote cache is read-only here",
                where=remote.config.url,
                hint="unset $TRTFORGE_REMOTE_CACHE_MODE / [cache] read_only to push",
            )
        from trtforge.cache.remote import push_all

        pushed, skipped = push_all(store, remote)
    except TrtforgeError as e:
        _fail(e, ctx.obj["verbose"])
    if as_json:
        JSON_OUT.send(document(0, [], pushed=pushed, present=skipped, bytes_up=remote.stats.bytes_up))
    elif not ctx.obj["quiet"]:
        click.echo(f"pushed {pushed} record(s), {skipped} already there ({remote.stats.bytes_up / 1e6:.1f} MB up)")


@cache.command("pull")
@_with_cache_opts
@click.option("--remote", "_remote_flag", is_flag=True, help="(implied) pull from the remote cache.")
@click.pass_context
def cache_pull(ctx, cache_dir, manifest_path, _remote_flag, as_json):
    """Download every remote record the local cache lacks, each object checked by digest."""
    try:
        store, remote = _remote_store(manifest_path, cache_dir)
        from trtforge.cache.remote import pull_all

        pulled, present = pull_all(store, remote)
    except TrtforgeError as e:
        _fail(e, ctx.obj["verbose"])
    for note in remote.take_notes():
        click.echo(f"trtforge: note: {note}", err=True)
    if as_json:
        JSON_OUT.send(document(0, [], pulled=pulled, present=present, bytes_down=remote.stats.bytes_down))
    elif not ctx.obj["quiet"]:
        click.echo(f"pulled {pulled} record(s), {present} already here ({remote.stats.bytes_down / 1e6:.1f} MB down)")


@cache.command("verify")
@_with_cache_opts
@click.pass_context
def cache_verify(ctx, cache_dir, manifest_path, as_json):
    """Re-hash every blob (ignoring the stat memo); drop the corrupt ones."""
    try:
        problems = _cache_store(manifest_path, cache_dir).verify_all()
    except TrtforgeError as e:
        _fail(e, ctx.obj["verbose"])
    if as_json:
        JSON_OUT.send(document(3 if problems else 0, [], problems=[str(p) for p in problems]))
    else:
        for p in problems:
            click.echo(p)
        click.echo(f"{len(problems)} problem(s)")
    sys.exit(3 if problems else 0)


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
    try:
        store = _cache_store(manifest_path, cache_dir)
        out = store.gc(_size(max_size), _age(older_than))
    except TrtforgeError as e:
        _fail(e, ctx.obj["verbose"])
    if as_json:
        JSON_OUT.send(document(0, [], **out))
    elif not ctx.obj["quiet"]:
        click.echo(f"removed {out['records_removed']} record(s), freed {out['bytes_freed'] / 1e6:.1f} MB")


def _size(text):
    from trtforge.cache.manage import parse_size

    return None if text is None else parse_size(text, "--max-size")


def _age(text):
    from trtforge.cache.manage import parse_age

    return None if text is None else parse_age(text, "--older-than")


@main.command()
@click.argument("subject", metavar="ENGINE_FILE|MODULE[:STAGE]")
@click.option(
    "-m",
    "--manifest",
    "manifest_path",
    default="engines.toml",
    type=click.Path(dir_okay=False),
    help="The manifest (for MODULE[:STAGE], and to find the cache of an engine file).",
)
@click.option(
    "--target",
    "on_target",
    default=None,
    help="MODULE's engine published for this target (default: the last target built).",
)
@_cache_dir_option
@_verbosity
@_json_option("Print the description as one JSON document on stdout (ok, exit_code, modules).")
@click.pass_context
def inspect(ctx, subject, manifest_path, on_target, cache_dir, as_json):
    """Describe an engine file (reads its published sidecar) or MODULE[:STAGE] from the cache
    (STAGE defaults to build). I/O, optimization profiles, layers by dtype and type, FP32 layers
    and their rules, sizes, versions, verification."""
    from trtforge.driver.api import inspect as run_inspect
    from trtforge.driver.inspect import render

    try:
        info = run_inspect(subject, manifest_path, cache_dir=cache_dir, on_target=on_target)
    except TrtforgeError as e:
        _fail(e, ctx.obj["verbose"])
    if as_json:
        described = info.as_json()
        # the description's own keys stay at the top too (the shape before `modules`)
        JSON_OUT.send({**described, **document(0, [{"name": info.module, **described}])})
    else:
        click.echo("\n".join(render(info)))


@main.command("export")
@click.argument("module_name")
@click.option(
    "--stage",
    default="precision_rules",
    show_default=True,
    type=click.Choice(["export", "graph_passes", "precision_rules"]),
    help="Whose ONNX to copy: the FP16 export, after the graph passes, or with the FP32 islands.",
)
@click.option(
    "-o",
    "--output",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="The folder to write model.onnx (+ its external data) into.",
)
@click.option(
    "-m",
    "--manifest",
    "manifest_path",
    default="engines.toml",
    type=click.Path(dir_okay=False),
    help="The manifest that names MODULE.",
)
@_cache_dir_option
@_verbosity
@_json_option("Print the files written as one JSON document on stdout (ok, exit_code, modules).")
@click.pass_context
def export_cmd(ctx, module_name, stage, out_dir, manifest_path, cache_dir, as_json):
    """Copy MODULE's ONNX of a stage out of the cache as standalone files (real copies, one link
    each) that onnx.load, polygraphy and Netron open."""
    from trtforge.driver.api import export_onnx

    try:
        written = export_onnx(module_name, stage, out_dir, manifest_path, cache_dir=cache_dir)
    except TrtforgeError as e:
        _fail(e, ctx.obj["verbose"])
    if as_json:
        files = [{"path": str(p), "bytes": p.stat().st_size} for p in written]
        JSON_OUT.send(document(0, [{"name": module_name, "stage": stage, "files": files}]))
        return
    for path in written:
        click.echo(f"{path}  {path.stat().st_size / 1e6:.2f} MB")


@main.group()
@_verbosity
def debug():
    """Find why a module fails and what fixes it."""


@debug.command("precision")
@click.argument("module_name")
@click.argument("manifest_path", required=False, type=click.Path(dir_okay=False))
@_manifest_option
@_cache_dir_option
@_verbosity
@_json_option("Print the finding as one JSON document on stdout (ok, exit_code, modules).")
@click.pass_context
def debug_precision_cmd(ctx, module_name, manifest_path, manifest_opt, cache_dir, as_json):
    """Find the smallest FP32 islands that make MODULE pass the FP16-faithful check; print the rule."""
    from trtforge.driver.api import debug_precision

    manifest_path = _manifest(manifest_path, manifest_opt, ctx.obj["verbose"])
    try:
        result = debug_precision(module_name, manifest_path, cache_dir=cache_dir)
    except TrtforgeError as e:
        _fail(e, ctx.obj["verbose"])
    code = 0 if result.fixed or result.passes_pure_fp16 else 3
    if as_json:
        from dataclasses import asdict

        found = {**asdict(result), "name": module_name}
        found["islands"] = [{**asdict(i), "nodes": sorted(i.nodes)} for i in result.islands]
        found["candidates"] = len(result.candidates)
        JSON_OUT.send(document(code, [found]))
    else:
        _print_debug(module_name, result)
    if code:
        sys.exit(3)


def _print_debug(name, result):
    if result.passes_pure_fp16:
        click.echo(f"{name}: passes the FP16-faithful check in pure FP16; no FP32 island needed")
        return
    d = result.first_divergence
    if d:
        click.echo(
            f"{name}: first diverging tensor '{d['tensor']}' from {d['op']} '{d['node']}': "
            f"{d['reason']} (FP32 max |x| {d['fp32_max_abs']:.4g})"
        )
    click.echo(f"{name}: {len(result.candidates)} candidate islands, {result.trials} FP16-faithful runs")
    if not result.fixed:
        click.echo(f"{name}: {result.failure}")
        return
    for island in result.islands:
        click.echo(f"  keep FP32: {island.rule} island at '{island.anchor}': {', '.join(sorted(island.nodes))}")
    click.echo(f"add to modules.{name}.precision.rules (either line):")
    for rule in result.rules:
        click.echo(f"  {rule}")


if __name__ == "__main__":
    main()


from trtforge.cli_plan import plan_cmd  # noqa: E402  (its own module: driver/plan.py's CLI hook)

# the grammar every command shares (-m/--manifest, -v/-q), on the command object itself
main.add_command(_verbosity(_manifest_option(plan_cmd)))
