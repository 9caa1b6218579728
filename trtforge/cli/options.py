"""The grammar every command shares: -m/--manifest (the positional form kept as an alias), -v/-q
before or after the subcommand, --json, --backend, --cache-dir, --junit's folder check."""

from __future__ import annotations

import os
from pathlib import Path

import click

from trtforge.cli.output import JSON_OUT
from trtforge.driver.api import ENV_CACHE
from trtforge.errors import TrtforgeError
from trtforge.manifest import BACKENDS

# read by Click alone (the options below): the CLI owns these names
ENV_BACKEND, ENV_JOBS, ENV_OUTPUT = "TRTFORGE_BACKEND", "TRTFORGE_JOBS", "TRTFORGE_OUTPUT_DIR"
BACKEND_CHOICE = click.Choice(list(BACKENDS))


def flags(ctx: click.Context) -> dict:
    """The run's flags: -v/--verbose and -q/--quiet, given before or after the subcommand."""
    root = ctx.find_root()
    if root.obj is None:
        root.obj = {"verbose": False, "quiet": False}
    return root.obj


def _set_flag(name: str):
    def callback(ctx, _param, value):
        if value:
            flags(ctx)[name] = True

    return callback


def verbosity(f):
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


def json_option(help_text: str):
    def start(_ctx, _param, value):
        if value:  # from now on fd 1 is stderr: only the document reaches stdout
            JSON_OUT.start()
        return value

    return click.option("--json", "as_json", is_flag=True, callback=start, is_eager=True, help=help_text)


def manifest_option(f):
    return click.option(
        "-m",
        "--manifest",
        "manifest_opt",
        default=None,
        type=click.Path(dir_okay=False),
        help="The manifest (default: engines.toml).",
    )(f)


def manifest_arg(positional: str | None, option: str | None) -> str:
    """-m/--manifest, or the positional form kept as an alias; both must agree."""
    if positional and option and Path(positional) != Path(option):
        raise TrtforgeError(
            f"two manifests given: '{positional}' and -m '{option}'",
            where="-m/--manifest",
            hint="pass the manifest once, as -m FILE",
        )
    return option or positional or "engines.toml"


def backend_option(f):
    return click.option(
        "--backend",
        type=BACKEND_CHOICE,
        default=None,
        envvar=ENV_BACKEND,
        show_envvar=True,
        help="Override every module's build.backend.",
    )(f)


def cache_dir_option(f):
    return click.option(
        "--cache-dir",
        default=None,
        envvar=ENV_CACHE,
        show_envvar=True,
        help="Cache folder (default: the manifest's cache_dir).",
    )(f)


def check_junit(path: Path) -> None:
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
