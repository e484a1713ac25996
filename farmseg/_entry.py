"""Console entry point: kept tiny so Ctrl-C during start-up exits 130 cleanly."""

import sys


def run() -> None:
    try:
        import multiprocessing

        multiprocessing.freeze_support()  # the GUI's job process in a frozen build
        from farmseg.cli import main

        code = main()
    except KeyboardInterrupt:
        sys.stderr.write("farmseg: cancelled\n")
        code = 130
    sys.exit(code)
