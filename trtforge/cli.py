"""The `trtforge` command. Only this module maps errors to exit codes:
0 ok, 1 a bug (traceback kept), 2 a user error (one line), 3 verification failed, 130 interrupted."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from trtforge.driver.stages import STAGE_NAMES
from trtforge.errors import TrtforgeError

ENV_CACHE = "TRTFORGE_CACHE_DIR"  # the same names as trtforge.driver.api's (not imported: startup cost)
ENV_BACKEND, ENV_JOBS, ENV_OUTPUT = "TRTFORGE_BACKEND", "TRTFORGE_JOBS", "TRTFORGE_OUTPUT_DIR"
BACKEND_CHOICE = click.Choice(["auto", "tensorrt", "tensorrt-rtx"])


def _error_line(e: TrtforgeError, verbose: bool) -> None:
    stage = f"{e.stage}: " if e.stage != TrtforgeError.stage else ""  # which stage failed
    click.echo(f"trtforge: error: {stage}{e.one_line()}", err=True)
    if verbose:
        from trtforge.errors import cause_text

        # a cause raised in a stage's child process arrives as text (errors.__reduce__)
        text = cause_text(e.__cause__) if e.__cause__ is not None else getattr(e, "cause_text", None)
        if text:
            click.echo(f"  cause: {text}", err=True)


def _fail(e: TrtforgeError, verbose: bool) -> None:
    _error_line(e, verbose)
    sys.exit(e.exit_code)


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
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[call-overload]
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[call-overload]
        except click.ClickException as e:
            ctx = getattr(e, "ctx", None)  # usage errors carry the command they concern
            path = ctx.command_path if ctx is not None else "trtforge"
            click.echo(
                " ".join(f"trtforge: error: {e.format_message().rstrip('.')}; see '{path} --help'".split()), err=True
            )
            sys.exit(2)
        except click.Abort:
            click.echo("trtforge: error: interrupted", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=_Group)
@click.option("--verbose", is_flag=True, help="Add the underlying cause to error lines.")
@click.version_option(package_name="trtforge", prog_name="trtforge", message="%(prog)s %(version)s")
@click.pass_context
def main(ctx, verbose):
    """trtforge: PyTorch modules -> verified TensorRT / TensorRT-RTX engines, incrementally."""
    ctx.obj = {"verbose": verbose}


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
@click.argument("manifest_path", default="engines.toml", type=click.Path(dir_okay=False))
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
@click.option("--quiet", is_flag=True, help="Print only warnings and errors (stderr).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
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
    "--until",
    default=None,
    type=click.Choice(["export", "graph_passes", "precision_rules"]),
    help="Run the stages every target shares up to this one, store (upload) them, publish nothing.",
)
@click.pass_context
def build(
    ctx,
    manifest_path,
    modules,
    backend,
    cache_dir,
    output_dir,
    quiet,
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
    until,
):
    """Export, rewrite, keep FP32 islands, build, verify and publish every module."""
    verbose = ctx.obj["verbose"]
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
        outcome = run_build(
            manifest_path,
            modules,
            backend=backend,
            cache_dir=cache_dir,
            jobs=jobs,
            require_engine_check=require_engine_check,
            allow_foreign_files=allow_foreign_files,
            force_from=(force_stage or "export") if force else None,
            progress=progress,
            output_dir=output_dir,
            on_result=notes,
            on_note=lambda text: click.echo(f"trtforge: note: {text}", err=True),
            remote=not no_remote,
            remote_read_only=remote_read_only,
            require_remote=require_remote,
            from_cache=from_cache,
            targets=targets,
            require_target=require_target,
            until=until,
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
    if as_json:
        click.echo(json.dumps(report_json(outcome.results), indent=1, default=str))
    elif not quiet:
        click.echo(status_table(outcome.results))
        click.echo(f"report: {outcome.report}  ({outcome.seconds:.2f}s)")
    for name, w in outcome.warnings:
        click.echo(f"trtforge: warning: module '{name}': {w}", err=True)
    for err in outcome.errors:
        _error_line(err, verbose)
    if outcome.remote_failure:  # the build ran locally; the remote's failure is still an error
        from trtforge.cache.remote import HINT

        click.echo(f"trtforge: error: cache: {outcome.remote_failure}; {HINT}", err=True)
    if outcome.errors or outcome.remote_failure:
        sys.exit(outcome.exit_code)


@main.command()
@click.argument("manifest_path", default="engines.toml", type=click.Path(dir_okay=False))
@click.option("--module", "modules", multiple=True, help="Explain only this module (repeatable).")
@_backend_option
@_cache_dir_option
@click.option(
    "--check",
    is_flag=True,
    help="A CI gate: exit 0 when everything is up to date, 1 when something would rebuild, "
    "2 when something cannot be planned (e.g. a depends pattern matching no file).",
)
@click.pass_context
def explain(ctx, manifest_path, modules, backend, cache_dir, check):
    """Say per module and stage whether it is up to date, or which key fields changed."""
    from trtforge.driver.api import explain_verdicts
    from trtforge.driver.explain import check_exit_code

    try:
        verdicts = explain_verdicts(manifest_path, modules, backend=backend, cache_dir=cache_dir)
    except TrtforgeError as e:
        _fail(e, ctx.obj["verbose"])
    for v in verdicts:
        click.echo(v.text)
    code = check_exit_code(verdicts)
    if code == 2:  # a user mistake, with or without --check: never a silent 0
        first = next(v for v in verdicts if v.state == "cannot plan")
        click.echo(f"trtforge: error: {first.text}", err=True)
        sys.exit(2)
    if check and code:
        stale = sorted({v.module for v in verdicts if v.state in ("build", "rebuild")})
        click.echo(f"trtforge: error: not up to date: {', '.join(stale)}; run `trtforge build`", err=True)
        sys.exit(1)


@main.command()
@click.argument("engines_dir", default="engines", type=click.Path(file_okay=False))
@click.option("--module", "modules", multiple=True, help="Check only this module's engine (repeatable).")
@click.option("--require-engine-check", is_flag=True, help="Fail when an engine cannot run here.")
@click.option(
    "--junit",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write JUnit XML here: one test case per engine, with its time.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (one object per engine).")
@click.pass_context
def verify(ctx, engines_dir, modules, require_engine_check, junit, as_json):
    """Pre-deploy: check published engines on this machine against their bundled reference."""
    from trtforge.predeploy import verify_published

    try:
        if junit:
            _check_junit(Path(junit))
        results: list[dict] = []
        failed = verify_published(
            Path(engines_dir), require_engine_check, junit, None if as_json else click.echo, results, modules
        )
    except TrtforgeError as e:
        _fail(e, ctx.obj["verbose"])
    if as_json:
        click.echo(json.dumps({"ok": not failed, "failed": failed, "results": results}, indent=1, default=str))
    if failed:
        first = next(r for r in results if r["status"] == "failed")
        click.echo(
            f"trtforge: error: {failed} of {len(results)} engine(s) failed pre-deploy verification; "
            f"first: {first.get('what', 'module')} '{first['module']}': {first['reason']}",
            err=True,
        )
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
        "--manifest",
        "manifest_path",
        default="engines.toml",
        help="The manifest whose cache_dir to use when no --cache-dir is given.",
    ),
]


def _with_cache_opts(f):
    for opt in reversed(_cache_opts):
        f = opt(f)
    return f


@cache.command("ls")
@_with_cache_opts
@click.option("--remote", "remote", is_flag=True, help="List the remote cache's records instead.")
@click.pass_context
def cache_ls(ctx, cache_dir, manifest_path, remote):
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
    width = max([len("MODULE"), *(len(r["module"]) for r in rows)])
    click.echo(f"{'KEY':<16}  {'MODULE':<{width}}  {'STAGE':<16} {'SIZE':>12}  {'AGE':>8}")
    for r in rows:
        click.echo(
            f"{r['key'][:16]}  {r['module']:<{width}}  {r['stage']:<16} {r['bytes'] / 1e6:9.2f} MB  "
            f"{(now - r['created']) / 3600:6.1f} h"
        )
    blobs = {d: n for r in rows for d, n in r["digests"].items()}  # a blob shared by records counts once
    click.echo(f"{len(rows)} record(s), {sum(blobs.values()) / 1e6:.2f} MB in {len(blobs)} blob(s)")
    for path, reason in damaged:
        click.echo(
            f"trtforge: note: damaged cache record {path.name[:16]} ignored ({reason}); "
            "`trtforge cache verify` removes it",
            err=True,
        )


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
def cache_push(ctx, cache_dir, manifest_path, _remote_flag):
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
    click.echo(f"pushed {pushed} record(s), {skipped} already there ({remote.stats.bytes_up / 1e6:.1f} MB up)")


@cache.command("pull")
@_with_cache_opts
@click.option("--remote", "_remote_flag", is_flag=True, help="(implied) pull from the remote cache.")
@click.pass_context
def cache_pull(ctx, cache_dir, manifest_path, _remote_flag):
    """Download every remote record the local cache lacks, each object checked by digest."""
    try:
        store, remote = _remote_store(manifest_path, cache_dir)
        from trtforge.cache.remote import pull_all

        pulled, present = pull_all(store, remote)
    except TrtforgeError as e:
        _fail(e, ctx.obj["verbose"])
    for note in remote.take_notes():
        click.echo(f"trtforge: note: {note}", err=True)
    click.echo(f"pulled {pulled} record(s), {present} already here ({remote.stats.bytes_down / 1e6:.1f} MB down)")


@cache.command("verify")
@_with_cache_opts
@click.pass_context
def cache_verify(ctx, cache_dir, manifest_path):
    """Re-hash every blob (ignoring the stat memo); drop the corrupt ones."""
    try:
        problems = _cache_store(manifest_path, cache_dir).verify_all()
    except TrtforgeError as e:
        _fail(e, ctx.obj["verbose"])
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
def cache_gc(ctx, cache_dir, manifest_path, max_size, older_than):
    """Drop old records and unreferenced blobs."""
    try:
        store = _cache_store(manifest_path, cache_dir)
        out = store.gc(_size(max_size), _age(older_than))
    except TrtforgeError as e:
        _fail(e, ctx.obj["verbose"])
    click.echo(f"removed {out['records_removed']} record(s), freed {out['bytes_freed'] / 1e6:.1f} MB")


def _size(text):
    from trtforge.cache.manage import parse_size

    return None if text is None else parse_size(text, "--max-size")


def _age(text):
    from trtforge.cache.manage import parse_age

    return None if text is None else parse_age(text, "--older-than")


@main.command()
@click.argument("target")
@click.option(
    "--manifest",
    "manifest_path",
    default="engines.toml",
    type=click.Path(dir_okay=False),
    help="The manifest (for MODULE[:STAGE], and to find the cache of an engine file).",
)
@_cache_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
@click.pass_context
def inspect(ctx, target, manifest_path, cache_dir, as_json):
    """Describe TARGET: an engine file (reads its published sidecar) or MODULE[:STAGE] from the
    cache (STAGE defaults to build). I/O, layers by dtype and type, FP32 layers and their rules,
    sizes, versions, verification."""
    from trtforge.driver.api import inspect as run_inspect
    from trtforge.driver.inspect import render

    try:
        info = run_inspect(target, manifest_path, cache_dir=cache_dir)
    except TrtforgeError as e:
        _fail(e, ctx.obj["verbose"])
    click.echo(json.dumps(info.as_json(), indent=1, default=str) if as_json else "\n".join(render(info)))


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
    "--manifest",
    "manifest_path",
    default="engines.toml",
    type=click.Path(dir_okay=False),
    help="The manifest that names MODULE.",
)
@_cache_dir_option
@click.pass_context
def export_cmd(ctx, module_name, stage, out_dir, manifest_path, cache_dir):
    """Copy MODULE's ONNX of a stage out of the cache as standalone files (real copies, one link
    each) that onnx.load, polygraphy and Netron open."""
    from trtforge.driver.api import export_onnx

    try:
        written = export_onnx(module_name, stage, out_dir, manifest_path, cache_dir=cache_dir)
    except TrtforgeError as e:
        _fail(e, ctx.obj["verbose"])
    for path in written:
        click.echo(f"{path}  {path.stat().st_size / 1e6:.2f} MB")


@main.group()
def debug():
    """Find why a module fails and what fixes it."""


@debug.command("precision")
@click.argument("module_name")
@click.argument("manifest_path", default="engines.toml", type=click.Path(dir_okay=False))
@_cache_dir_option
@click.pass_context
def debug_precision_cmd(ctx, module_name, manifest_path, cache_dir):
    """Find the smallest FP32 islands that make MODULE pass the FP16-faithful check; print the rule."""
    from trtforge.driver.api import debug_precision

    try:
        result = debug_precision(module_name, manifest_path, cache_dir=cache_dir)
    except TrtforgeError as e:
        _fail(e, ctx.obj["verbose"])
    _print_debug(module_name, result)
    if not result.fixed:
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

main.add_command(plan_cmd)
