"""`trtforge plan`: the build's jobs for a CI system's matrix (driver/plan.py), as text, JSON, lines
for GitHub Actions' $GITHUB_OUTPUT, or a GitLab CI child pipeline. The CLI hook only: parse, call
driver/api.py, print; errors map to exit codes as everywhere (the group, cli/__init__.py)."""

from __future__ import annotations

import json

import click

from trtforge.cli.options import ENV_CACHE, flags, json_option, manifest_arg, manifest_option, verbosity
from trtforge.cli.output import finish
from trtforge.errors import TrtforgeError


@click.command("plan")
@click.argument("manifest_path", required=False, default=None, type=click.Path(dir_okay=False))
@manifest_option
@click.option("--module", "modules", multiple=True, help="Plan only this module (repeatable).")
@click.option("--target", "targets", multiple=True, help="Plan only this [targets.NAME] target (repeatable).")
@click.option("--cache-dir", default=None, envvar=ENV_CACHE, help="Local cache folder.")
@click.option("--no-remote", is_flag=True, help="Plan against the local cache alone.")
@json_option("Print the plan as one JSON document on stdout (ok, exit_code, modules, jobs in order with needs).")
@click.option(
    "--github-matrix",
    "github",
    is_flag=True,
    help="Print `prepare=`, `build=` (matrices), `has_*=` and `assemble=` lines for $GITHUB_OUTPUT.",
)
@click.option("--gitlab-ci", "gitlab", is_flag=True, help="Print a GitLab CI child pipeline (JSON, valid YAML).")
@click.option("--gitlab-template", default=".trtforge", show_default=True, help="The job every GitLab job extends.")
@click.option(
    "--gitlab-include", default=None, help="A file of the repository the GitLab pipeline includes (the template)."
)
@click.option(
    "--trtforge",
    "command",
    default="trtforge",
    show_default=True,
    help="How jobs run trtforge (e.g. '.venv/bin/trtforge').",
)
@verbosity
@click.pass_context
def plan_cmd(
    ctx,
    manifest_path,
    manifest_opt,
    modules,
    targets,
    cache_dir,
    no_remote,
    as_json,
    github,
    gitlab,
    gitlab_template,
    gitlab_include,
    command,
):
    """Print the build's jobs in the order they may run, leaving out what the cache holds."""
    manifest_path = manifest_arg(manifest_path, manifest_opt)
    if sum((as_json, github, gitlab)) > 1:
        raise TrtforgeError("choose one of --json, --github-matrix, --gitlab-ci", where="plan")
    from trtforge.driver.api import plan

    result = plan(
        manifest_path,
        modules,
        targets=targets,
        cache_dir=cache_dir,
        trtforge=command,
        manifest_arg=manifest_path,
        remote=not no_remote,
    )
    doc = result.as_json()
    if github:
        click.echo(result.github())
    elif gitlab:
        click.echo(json.dumps(result.gitlab(gitlab_template, gitlab_include), indent=1))
    elif not as_json:
        click.echo(result.render())
    planned = sorted({j["module"] for j in doc["jobs"] if j.get("module")})
    finish(flags(ctx)["verbose"], [{"name": m} for m in planned], jobs=doc["jobs"], cached=doc["cached"])
