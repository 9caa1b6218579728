"""Choosing the TensorRT family in a process that already imported polygraphy (issue: a CI run
where another test in the same worker had imported polygraphy with the family unset)."""

import subprocess
import sys
import textwrap


def _run(code: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "POLYGRAPHY_USE_TENSORRT_RTX": "0"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env)


def test_polygraphy_imported_first_can_still_build_with_rtx():
    done = _run(
        """
        import polygraphy.backend.onnx  # someone used polygraphy's ONNX tools first, family unset
        from trtforge import backends as be
        be.select(be.RTX)
        from polygraphy.backend.trt import util
        print(util.trt.__name__)
        """
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "tensorrt_rtx"


def test_a_bound_family_cannot_be_switched():
    done = _run(
        """
        from trtforge import backends as be
        from trtforge.errors import BuildError
        be.select(be.RTX)
        import polygraphy.backend.trt
        try:
            be.select(be.TRT)
        except BuildError as e:
            print("refused:", e)
        else:
            print("switched")
        """
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused: this process already uses the other TensorRT family" in done.stdout
