"""`trtforge debug precision`: the smallest FP32 islands that make a module pass (driver/debug.py)."""

from __future__ import annotations

import click

from trtforge.cli.options import cache_dir_option, flags, json_option, manifest_arg, manifest_option, verbosity
from trtforge.cli.output import finish
from trtforge.errors import NoPrecisionFix


@click.group()
@verbosity
def debug():
    """Find why a module fails and what fixes it."""


@debug.command("precision")
@click.argument("module_name")
@click.argument("manifest_path", required=False, type=click.Path(dir_okay=False))
@manifest_option
@cache_dir_option
@verbosity
@json_option("Print the finding as one JSON document on stdout (ok, exit_code, modules).")
@click.pass_context
def debug_precision_cmd(ctx, module_name, manifest_path, manifest_opt, cache_dir, as_json):
    """Find the smallest FP32 islands that make MODULE pass the FP16-faithful check; print the rule."""
    from trtforge.driver.api import debug_precision

    manifest_path = manifest_arg(manifest_path, manifest_opt)
    result = debug_precision(module_name, manifest_path, cache_dir=cache_dir)
    failure = None if result.fixed or result.passes_pure_fp16 else NoPrecisionFix(result.failure or "no fix found")
    found: dict = {}
    if as_json:
        from dataclasses import asdict

        found = {**asdict(result), "name": module_name}
        found["islands"] = [{**asdict(i), "nodes": sorted(i.nodes)} for i in result.islands]
        found["candidates"] = len(result.candidates)
    else:
        _print_debug(module_name, result)
    finish(flags(ctx)["verbose"], [found], failure)


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
