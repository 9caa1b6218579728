"""[pipelines.NAME] tables: modules of this manifest composed by a user's runner, checked end to end.

    [pipelines.txt2img]
    modules = ["text_encoder", "unet", "vae_decoder"]
    runner = "examples.txt2img:generate"          # runner(m, **inputs, **runner_args) -> {output: array}
    runner_args = { steps = 4, guidance = 7.5 }
    inputs.latents = { shape = [1, 4, 8, 8], dtype = "float32", dist = "normal" }
    outputs.image = { metric = "psnr", min_psnr = 30 }

Inputs take every source a module input takes (trtforge/data/sources.py). Each output is held
to the tolerances (TOLERANCE, the module defaults) or, with `metric`, to that metric alone
(psnr, iou, topk, or sequence: the share of generated tokens equal to the reference's); `valid`
and `constant_ok` mean what they mean for a module's outputs (verify/valid.py), `valid` naming
an integer or bool input of the pipeline. Loaded
with the manifest (no numpy, no torch here); every default resolved, so `as_key()` is canonical.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from trtforge.data.transforms import transforms
from trtforge.errors import ManifestError
from trtforge.manifest import checks as c
from trtforge.manifest import limits
from trtforge.manifest.checks import Spec
from trtforge.manifest.fields import key_material, setting
from trtforge.manifest.modules import check_valid_inputs, parse_input
from trtforge.manifest.settings import OUTPUT_USE, TASK, TOLERANCE
from trtforge.manifest.spec import InputSpec, ModuleSpec

PIPELINE_KEYS = ("modules", "runner", "runner_args", "inputs", "outputs", "seed")


@dataclass(frozen=True)
class PipelineSpec:
    name: str = setting()
    modules: tuple[str, ...] = setting(key=lambda p: list(p.modules))
    runner: str = setting()
    runner_args: dict = setting()
    inputs: tuple[InputSpec, ...] = setting(key=lambda p: [i.as_key() for i in p.inputs])  # in the order written
    outputs: dict = setting()  # output name -> resolved checks (tolerances, or metric + its keys)
    seed: int = setting(c.integer, 0)

    def as_key(self) -> dict:
        return key_material(self)


# metric = "sequence": the share of generated tokens equal to the reference's
SEQUENCE: Spec = {"min_match": (c.fraction, 1.0)}


def output_checks(raw: Any, where: str) -> dict:
    """One output's checks: the module tolerances (defaults filled) or a metric with its keys."""
    if not isinstance(raw, dict):
        raise ManifestError("expected a table, e.g. { metric = 'psnr', min_psnr = 30 }", where=where)
    # valid / constant_ok as for a module's outputs (verify/valid.py), written only when set
    use = {k: OUTPUT_USE[k][0](raw[k], f"{where}.{k}") for k in sorted(raw) if k in OUTPUT_USE}
    raw = {k: v for k, v in raw.items() if k not in OUTPUT_USE}
    metric = raw.get("metric")
    metrics = (*TASK, "sequence")
    if metric is None:
        return {**c.section(raw, TOLERANCE, where), **use}
    c.one_of(metrics)(metric, f"{where}.metric")
    spec = SEQUENCE if metric == "sequence" else TASK[metric]
    rest = {k: v for k, v in raw.items() if k != "metric"}
    return {"metric": metric, **c.section(rest, spec, where), **use}


def parse_pipelines(raw: Any, modules: tuple[ModuleSpec, ...], where: str) -> tuple[PipelineSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ManifestError("expected [pipelines.NAME] tables", where=where)
    return tuple(_pipeline(name, body, {x.name: x for x in modules}, f"{where}.{name}") for name, body in raw.items())


def _pipeline(name: str, raw: Any, modules: dict[str, ModuleSpec], where: str) -> PipelineSpec:
    if not c.NAME_RE.match(name) or ".." in name:
        raise ManifestError(f"pipeline name '{name}' must be letters, digits, '_', '-', '.'", where=where)
    limits.check_name(name, "pipeline", where)
    if not isinstance(raw, dict):
        raise ManifestError(f"expected a table, got {type(raw).__name__}", where=where)
    c.known_keys(raw, PIPELINE_KEYS, where)
    for key in ("modules", "runner", "outputs"):
        if key not in raw:
            raise ManifestError(f"missing required key '{key}'", where=f"{where}.{key}")
    names = _module_names(raw["modules"], modules, f"{where}.modules")
    runner = c.factory(raw["runner"], f"{where}.runner")
    args = raw.get("runner_args", {})
    if not isinstance(args, dict):
        raise ManifestError("expected a table of keyword arguments", where=f"{where}.runner_args")
    return PipelineSpec(
        name=name,
        modules=names,
        runner=runner,
        runner_args=dict(sorted(args.items())),
        inputs=(inputs := _inputs(raw.get("inputs", {}), args, where)),
        outputs=_outputs(raw["outputs"], inputs, where),
        seed=c.integer(raw["seed"], f"{where}.seed") if "seed" in raw else 0,
    )


def _module_names(raw: Any, modules: dict[str, ModuleSpec], where: str) -> tuple[str, ...]:
    """`modules`: modules of this manifest, each once, none baking a tensor op into its engine."""
    names = c.str_list(raw, where)
    if not names:
        raise ManifestError("names no module", where=where, hint="list the modules the runner calls")
    for i, mod in enumerate(names):
        w = f"{where}[{i}]"
        if mod not in modules:
            near = difflib.get_close_matches(mod, list(modules), n=1)
            raise ManifestError(
                f"no module '{mod}' in this manifest",
                where=w,
                hint=f"did you mean '{near[0]}'?" if near else f"modules: {', '.join(modules)}",
            )
        if names.count(mod) > 1:
            raise ManifestError(f"module '{mod}' is named twice", where=w)
        baked = transforms(modules[mod].passes, mod)
        if baked:
            raise ManifestError(
                f"module '{mod}' bakes a tensor op into its engine ({baked[0]['name']}); a pipeline calls modules "
                "as the manifest declares their inputs and outputs",
                where=w,
                hint="leave bake_* passes out of modules a pipeline calls",
            )
    return names


def _inputs(raw_inputs: Any, args: dict, where: str) -> tuple[InputSpec, ...]:
    """`inputs`: fixed shapes, no name shared with a runner argument, within the size limits."""
    if not isinstance(raw_inputs, dict):
        raise ManifestError("expected a table name -> {shape, dtype, source}", where=f"{where}.inputs")
    inputs = tuple(parse_input(k, v, f"{where}.inputs.{k}") for k, v in raw_inputs.items())
    for spec in inputs:
        if any(isinstance(d, str) for d in spec.shape):
            raise ManifestError(
                "a pipeline input has a fixed shape", where=f"{where}.inputs.{spec.name}.shape", hint="write sizes"
            )
        if spec.name in args:
            raise ManifestError(
                f"'{spec.name}' is both an input and a runner argument", where=f"{where}.runner_args.{spec.name}"
            )
    limits.check_input_sizes(inputs, 1, where, {})
    return inputs


def _outputs(outs: Any, inputs: tuple[InputSpec, ...], where: str) -> dict:
    if not isinstance(outs, dict) or not outs:
        raise ManifestError(
            "expected a table output -> checks",
            where=f"{where}.outputs",
            hint="e.g. outputs.image = { metric = 'psnr' }",
        )
    outputs = {}
    for out_name, checks in sorted(outs.items()):
        limits.check_tensor_name(out_name, "output", f"{where}.outputs.{out_name}")
        outputs[out_name] = output_checks(checks, f"{where}.outputs.{out_name}")
    check_valid_inputs(outputs, inputs, f"{where}.outputs", owner="pipeline")
    return outputs
