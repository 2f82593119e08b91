"""One exception hierarchy: the CLI prints ``str(error)`` as its one-line message."""


class AnonError(Exception):
    """Base class for every error trt_anon raises on purpose."""

    exit_code = 1


class ConfigError(AnonError, ValueError):
    """An option has a value that cannot work."""

    exit_code = 2


class InputError(AnonError):
    """The input is missing, empty, not a video/image, or cannot be decoded."""


class OutputError(AnonError):
    """The output cannot be written (exists, is the input, folder not writable, disk full)."""


class BackendError(AnonError):
    """A backend asked for by name cannot run on this machine."""


class DetectorError(AnonError):
    """The detector failed; the batch it was given is never written unredacted."""


class Terminated(BaseException):
    """SIGTERM, turned into an exception (by the CLI) so that temporary files are removed on the way out and a
    live recording is finalised. A BaseException, like KeyboardInterrupt: no ``except Exception`` swallows it."""


def first_line(exc: BaseException) -> str:
    """A third-party error in one line: GPU packages raise untyped, multi-line errors (TensorRT's
    RuntimeError, NVRTC's CompileException, a missing module); the type is named when it helps."""
    text = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, AnonError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
