"""The `trtforge` command: parses, calls the driver (or predeploy, cache/), prints. Only the group
below turns errors into exit codes, each the error class's own (trtforge/errors.py): 0 ok, 1 a bug
(traceback kept), 2 a user error (one line), 3 verification failed, 4 `explain --check` would
rebuild, 130/143 interrupted. One module per command family: build, explain, verify, inspect
(and export), debug, cache, plan; options.py holds the shared grammar, output.py what is printed
(the one --json document)."""

from __future__ import annotations

import sys

import click

from trtforge.cli.options import flags
from trtforge.cli.output import JSON_OUT, show
from trtforge.errors import TrtforgeError
from trtforge.processes.interrupts import Interrupted


class _Group(click.Group):
    """The one place a run ends: a TrtforgeError becomes its line and its class's exit code; an
    interrupt its line and 130 (143 for SIGTERM); Click's own usage errors (a bad option value, an
    unknown command or flag, a folder where a file is due) one `trtforge: error:` line and exit 2,
    like every other user mistake, instead of Click's three lines of usage."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TrtforgeError as e:
            show(e, flags(ctx)["verbose"])
            sys.exit(e.exit_code)  # main sends the --json document if the command did not
        except KeyboardInterrupt as e:
            note = flags(ctx).get("interrupt_note")  # what the command kept (build: nothing half-built)
            if note is None:
                raise  # Click's Abort: `trtforge: error: interrupted`, exit 130 (main)
            code = e.exit_code if isinstance(e, Interrupted) else 130
            name = "SIGTERM" if code == 143 else "Ctrl-C"
            click.echo(f"trtforge: error: interrupted ({name}); {note}", err=True)
            sys.exit(code)

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


from trtforge.cli.build import build  # noqa: E402  (the commands, after the group they join)
from trtforge.cli.cache import cache  # noqa: E402
from trtforge.cli.debug import debug  # noqa: E402
from trtforge.cli.explain import explain  # noqa: E402
from trtforge.cli.inspect import export_cmd, inspect  # noqa: E402
from trtforge.cli.plan import plan_cmd  # noqa: E402
from trtforge.cli.verify import verify  # noqa: E402

for _command in (build, explain, verify, cache, inspect, export_cmd, debug, plan_cmd):
    main.add_command(_command)

__all__ = ["main"]
