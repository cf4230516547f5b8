"""Keep native libraries' chatter (TensorFlow's C++ logging, the TFLite converter's MLIR dumps)
off the user's terminal unless asked for.

Those lines are written by C++ straight to file descriptor 2, past Python's ``sys.stderr`` and past
``TF_CPP_MIN_LOG_LEVEL`` for whatever is logged before absl is initialised, so the only way to
hold them is to point descriptor 2 at a temporary file for the duration. What was captured is
written out after all when the block fails (an import error's explanation must not be lost) or
when ``EDGECNN_VERBOSE`` is set (``edgecnn --verbose``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from typing import Iterator

VERBOSE_ENV = "EDGECNN_VERBOSE"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Descriptor 2 goes to a temporary file inside the block; replayed on failure or when verbose."""
    if verbose():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable descriptor 2 (an embedded interpreter): nothing to silence
        yield
        return
    failed = False
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                captured.seek(0)
                sys.stderr.write(captured.read().decode(errors="replace"))
                sys.stderr.flush()


@contextlib.contextmanager
def command_output(expected: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """One CLI command: native libraries' descriptor-2 output goes to a temporary file while Python's
    ``sys.stderr`` (our progress, warnings and error lines) still reaches the terminal.

    What the libraries wrote is shown after all when the command fails with an exception not in
    ``expected`` (an internal error's context), or live with ``EDGECNN_VERBOSE``. Nothing changes
    where ``sys.stderr`` is not the process's own (click's test runner, a notebook).
    """
    if verbose() or sys.stderr is not sys.__stderr__:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    terminal = os.fdopen(saved, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")
    with tempfile.TemporaryFile() as captured, warnings.catch_warnings():
        # TensorFlow's converter warns about every int8 conversion without quantized-input statistics, which
        # ours never need (the manifest carries the input's scale and zero point).
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        os.dup2(captured.fileno(), 2)
        sys.stderr = terminal
        unexpected = False
        try:
            yield
        except expected:
            raise
        except BaseException:
            unexpected = True
            raise
        finally:
            terminal.flush()
            os.dup2(saved, 2)
            sys.stderr = sys.__stderr__
            terminal.close()
            if unexpected:
                captured.seek(0)
                sys.stderr.write(captured.read().decode(errors="replace"))
                sys.stderr.flush()
