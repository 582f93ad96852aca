"""What every command line of the project shares: --version, the exit-code contract, and signals.

Exit status, the same for every CLI: 0 done; 1 some inputs failed (each named on one line
`error: <input>: <reason>`, the others still done); 2 usage error or unusable weights (nothing done);
130 interrupted by Ctrl-C (143 by SIGTERM, 129 by SIGHUP): one line `interrupted`, no traceback, and no
temporary or half-written file left behind (every write goes through reference.support.files.atomic_write).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from importlib import metadata

EXIT_CODES = ("exit status: 0 done; 1 some inputs failed (one line each, the others done); "
              "2 usage error or unusable weights; 130 interrupted (143 on SIGTERM)")
DONE, SOME_FAILED, USAGE = 0, 1, 2


def version() -> str:
    try:
        return metadata.version("rcan-threeways")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


class Interrupted(BaseException):
    """SIGTERM / SIGHUP, raised where the program is, so that `finally` and cleanup run as for Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


_pending: list[int] = []


def _raise(signum, frame):
    # Python runs the handler between bytecodes, sometimes inside a garbage-collection callback, where an
    # exception is swallowed: remember the signal too, so check_interrupted() raises it at the next safe point.
    _pending.append(signum)
    raise Interrupted(signum)


def check_interrupted() -> None:
    """Raise the signal that arrived while an exception could not be raised (call between work items)."""
    if _pending:
        raise Interrupted(_pending[0])


def parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """An ArgumentParser with the module docstring as help, the exit codes after the options, --version.
    prog: the `python -m` form; a console script (rcan-upscale, ...) is named as it was called."""
    called = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    prog = called if called.startswith("rcan-") else prog
    ap = argparse.ArgumentParser(prog=prog, description=doc, epilog=EXIT_CODES,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"%(prog)s {version()} (rcan-threeways)")
    return ap


def run(main, argv=None) -> int:
    """main(argv) with the signal contract: cleanup on SIGINT/SIGTERM/SIGHUP, one line, 128 + signal."""
    old = {s: signal.signal(s, _raise) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    _pending.clear()
    default_hook = sys.unraisablehook

    def quiet_hook(unraisable):   # our signal, swallowed inside a finalizer: check_interrupted() raises it
        if not isinstance(unraisable.exc_value, Interrupted):
            default_hook(unraisable)
    sys.unraisablehook = quiet_hook
    try:
        return main(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except Interrupted as e:
        print("interrupted", file=sys.stderr)
        return 128 + e.signum
    except BaseException:
        # The signal's exception can surface changed: raised inside a callback of a C++ library (a JAX
        # cache lookup calling a dataclass's __eq__), it comes back as that library's error. Whatever
        # escapes once a signal has arrived is the interruption.
        if not _pending:
            raise
        print("interrupted", file=sys.stderr)
        return 128 + _pending[0]
    finally:
        sys.unraisablehook = default_hook
        for s, handler in old.items():
            signal.signal(s, handler)


def entry(main):
    """A console-script entry point for main(argv) -> int."""
    def start():
        sys.exit(run(main))
    return start
