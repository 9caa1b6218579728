"""Typed errors. Each user-facing error renders as one line naming the module, stage and the
field, node or file at fault, plus the next step. Each class fixes its exit code; the CLI's group
(trtforge/cli/__init__.py) catches them once and exits with it."""

from __future__ import annotations


class TrtforgeError(Exception):
    """A user-facing failure: one line, no traceback. Subclasses fix the stage and exit code."""

    stage = "trtforge"
    exit_code = 2
    label: str | None = "error"  # the CLI's line: `trtforge: <label>: ...`; None: the command's output said it

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None, module: str | None = None):
        self.message = message
        self.where = where
        self.hint = hint
        self.module = module
        super().__init__(self.one_line())

    def __reduce__(self):
        # `build --jobs` workers and a stage's child process send errors back to the CLI process:
        # keep every field, whatever a subclass's __init__ takes, and the cause as text (the cause
        # itself may not pickle) for --verbose
        state = dict(self.__dict__)
        if self.__cause__ is not None and "cause_text" not in state:
            state["cause_text"] = cause_text(self.__cause__)
        return (_rebuild_error, (type(self), state))

    def one_line(self) -> str:
        parts = []
        if self.module:
            parts.append(f"module '{self.module}'")
        if self.where:
            parts.append(self.where)
        head = ": ".join(parts)
        text = f"{head}: {self.message}" if head else self.message
        if self.hint:
            text += f"; {self.hint}"
        return " ".join(text.split())  # one line, always


def cause_text(cause: BaseException) -> str:
    return f"{type(cause).__name__}: {' '.join(str(cause).split())[:2000]}"


def _rebuild_error(cls, state: dict) -> TrtforgeError:
    error = Exception.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error.one_line())
    return error


class ManifestError(TrtforgeError):
    stage = "manifest"


class ExportError(TrtforgeError):
    stage = "export"


class PassError(TrtforgeError):
    stage = "graph_passes"


class PrecisionError(TrtforgeError):
    stage = "precision_rules"


class BuildError(TrtforgeError):
    stage = "build"


class BackendMissingError(BuildError):
    pass


class VerifyError(TrtforgeError):
    """Verification failed: the artifact is not published. Exit 3."""

    stage = "verify"
    exit_code = 3


class VerifySetupError(TrtforgeError):
    """What verification was asked to do cannot be done as written (a `valid` input that does not
    line up with its output, a broken FP32 reference): a user error, exit 2, nothing compared."""

    stage = "verify"


class NotBuiltYet(TrtforgeError):
    """`build --from-cache`: no runner has stored this stage's result yet. Exit 3: what the
    release needs is not there (nothing is built here)."""

    stage = "assemble"
    exit_code = 3


class PipelineError(TrtforgeError):
    """A [pipelines.NAME] the user must fix: its runner, a call at a shape no engine takes, a
    broken reference (trtforge/pipelines/). Exit 2; a pipeline whose outputs drift is a VerifyError."""

    stage = "pipeline"


class CacheError(TrtforgeError):
    stage = "cache"


class CacheDamaged(CacheError):
    """`cache verify` found corrupt blobs or dangling records (listed, and dropped). Exit 3."""

    exit_code = 3
    label = None


class WouldRebuild(TrtforgeError):
    """`explain --check`: something would be built or rebuilt. Exit 4 (1 is a bug); the answer to
    the question --check asks, not an error."""

    exit_code = 4
    label = "not up to date"


class PredeployFailed(TrtforgeError):
    """`trtforge verify`: a published engine failed its check on this machine. Exit 3."""

    exit_code = 3


class NoPrecisionFix(PrecisionError):
    """`debug precision` found no FP32 islands that make the module pass (its output says why). Exit 3."""

    exit_code = 3
    label = None


class PublishError(TrtforgeError):
    stage = "publish"


class InternalError(Exception):
    """A broken invariant: a bug in trtforge, not a user mistake. Not a TrtforgeError, so the CLI
    keeps its traceback (exit 1). Raised by `invariant`, which, unlike `assert`, `python -O` keeps."""


def invariant(holds: bool, message: str) -> None:
    if not holds:
        raise InternalError(message)
