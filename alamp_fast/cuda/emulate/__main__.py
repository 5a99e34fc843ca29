"""``python -m alamp_fast.cuda.emulate``: compile the package's kernels for the emulator now.

Builds one library per ``kernels/*.cu`` file with every instantiation the launchers can ask for,
in the given build mode, into the cache (``$ALAMP_FAST_EMULATE_CACHE``, default
``~/.cache/alamp_fast/emulate``), so a CI job can build once (and cache the folder) before the
tests. Prints one line per file: its library and the seconds it took (0 when cached).
"""

from __future__ import annotations

import argparse
import sys
import time

from alamp_fast.cuda.emulate import _build


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alamp_fast.cuda.emulate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=_build.MODES, default=None,
                        help="build mode (default: from the environment, else fast)")
    parser.add_argument("names", nargs="*", help="kernel files (default: all)")
    args = parser.parse_args(argv)
    from alamp_fast.cuda import _kernels

    everything = _kernels.all_name_expressions()
    unknown = sorted(set(args.names) - set(everything))
    if unknown:
        parser.error(f"unknown kernel files {unknown}; known: {sorted(everything)}")
    mode = args.mode or _build.mode()
    for name in args.names or sorted(everything):
        start = time.perf_counter()
        path = _build.build(_kernels.source(name), everything[name], mode)
        print(f"{name}.cu [{mode}] {len(everything[name])} kernels: {path} "
              f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
