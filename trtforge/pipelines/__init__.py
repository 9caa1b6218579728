"""Pipelines: modules composed end to end by a user's runner, verified as users ship them.

- `trtforge/manifest/pipelines.py` (in the manifest package): the [pipelines.NAME] tables;
- `harness.py`: `m.unet(sample=..., timestep=...)`, the FP32 and published backends, the per-call recorder;
- `check.py`: the reference run, the published run, the crossover runs (in a child: torch, the runner);
- `verdict.py`: broken references, output checks (psnr, topk, iou, sequence, tolerances), blame;
- `drive.py`: the cache key, the verdict in the build, withdrawal; `published.py`: files on the target;
- `report.py`: REPORT.md, report.html pieces; `target.py`: `trtforge verify` re-runs a pipeline.

Only check.py and harness.py import torch, and only in the child process that runs a check.
"""
