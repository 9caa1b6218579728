"""`trtforge inspect` (an engine file or MODULE[:STAGE] described) and `trtforge export` (a
stage's ONNX copied out of the cache): both read the cache, neither builds."""

from __future__ import annotations

import click

from trtforge.cli.options import cache_dir_option, flags, json_option, verbosity
from trtforge.cli.output import finish
from trtforge.driver.request import SHARED_STAGES


@click.command()
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
@cache_dir_option
@verbosity
@json_option("Print the description as one JSON document on stdout (ok, exit_code, modules).")
@click.pass_context
def inspect(ctx, subject, manifest_path, on_target, cache_dir, as_json):
    """Describe an engine file (reads its published sidecar) or MODULE[:STAGE] from the cache
    (STAGE defaults to build). I/O, optimization profiles, layers by dtype and type, FP32 layers
    and their rules, sizes, versions, verification."""
    from trtforge.driver.api import inspect as run_inspect
    from trtforge.driver.inspect import render

    info = run_inspect(subject, manifest_path, cache_dir=cache_dir, on_target=on_target)
    if not as_json:
        click.echo("\n".join(render(info)))
    described = info.as_json()
    # the description's own keys stay at the top too (the shape before `modules`)
    finish(flags(ctx)["verbose"], [{"name": info.module, **described}], **described)


@click.command("export")
@click.argument("module_name")
@click.option(
    "--stage",
    default=SHARED_STAGES[-1],
    show_default=True,
    type=click.Choice(SHARED_STAGES),
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
@cache_dir_option
@verbosity
@json_option("Print the files written as one JSON document on stdout (ok, exit_code, modules).")
@click.pass_context
def export_cmd(ctx, module_name, stage, out_dir, manifest_path, cache_dir, as_json):
    """Copy MODULE's ONNX of a stage out of the cache as standalone files (real copies, one link
    each) that onnx.load, polygraphy and Netron open."""
    from trtforge.driver.api import export_onnx

    written = export_onnx(module_name, stage, out_dir, manifest_path, cache_dir=cache_dir)
    if not as_json:
        for path in written:
            click.echo(f"{path}  {path.stat().st_size / 1e6:.2f} MB")
    files = [{"path": str(p), "bytes": p.stat().st_size} for p in written]
    finish(flags(ctx)["verbose"], [{"name": module_name, "stage": stage, "files": files}])
