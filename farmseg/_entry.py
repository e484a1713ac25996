"""Console entry point: kept tiny so Ctrl-C during start-up exits 130 cleanly."""

import sys


def run() -> None:
    try:
        from farmseg.cli import main

        code = main()
    except KeyboardInterrupt:
        sys.stderr.write("farmseg: cancelled\n")
        code = 130
    sys.exit(code)
