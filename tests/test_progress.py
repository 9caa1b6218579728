"""Progress display: a live line on a terminal, plain lines in CI, nothing when disabled."""

from __future__ import annotations

import io
import time

from trtforge.processes import progress as progress_mod
from trtforge.processes.progress import Progress


class FakeTerminal(io.StringIO):
    """Test double: a stream that says it is a TTY."""

    def isatty(self) -> bool:
        return True


def test_ci_writes_one_plain_line_per_stage_event():
    out = io.StringIO()
    p = Progress(out)
    p.expect(8)
    p.start("ampere_ada/text_encoder", "build")
    p.done("ampere_ada/text_encoder", "build", 3.0, 300)
    p.start("ampere_ada/unet", "export")
    p.start("ampere_ada/unet", "build")
    p.done("ampere_ada/unet", "build", 12.34, 1228.8)
    p.close()
    assert out.getvalue() == (
        "[1/8] ampere_ada/text_encoder build ...\n"
        "[1/8] ampere_ada/text_encoder build 3.0s, RSS 300 MiB\n"
        "[2/8] ampere_ada/unet export ...\n"
        "[2/8] ampere_ada/unet build ...\n"
        "[2/8] ampere_ada/unet build 12.3s, RSS 1.2 GiB\n"
    )


def test_terminal_rewrites_one_line_with_elapsed_and_builder_phase():
    out = FakeTerminal()
    p = Progress(out, interval_s=0.01)
    assert progress_mod.active() is p
    p.start("vit", "build")
    p.phase("Building engine 3/6")
    time.sleep(0.1)
    p.done("vit", "build", 0.1)
    p.close()
    text = out.getvalue()
    assert "\r\033[K[1] vit build 0." in text and "(Building engine 3/6)" in text
    assert text.endswith("[1] vit build 0.1s\n")


def test_disabled_writes_nothing_and_is_not_active():
    out = FakeTerminal()
    p = Progress(out, enabled=False)
    p.start("vit", "export")
    p.done("vit", "export", 1.0)
    p.close()
    assert out.getvalue() == "" and progress_mod.active() is None
