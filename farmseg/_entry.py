"""Console entry point: kept tiny so Ctrl-C during start-up exits 130 cleanly."""

import os
import signal
import sys


def run() -> None:
    from farmseg.gui import JOB_PROCESS_ARG

    if sys.argv[1:2] == [JOB_PROCESS_ARG]:  # a GUI job's process (farmseg.gui.child)
        from farmseg.gui.job_process import main as job_process_main

        sys.exit(job_process_main())
    try:
        import multiprocessing

        multiprocessing.freeze_support()  # bench's spawned processes in a frozen build
        from farmseg.cli import main

        code = main()
    except KeyboardInterrupt:
        sys.stderr.write("farmseg: cancelled\n")
        code = 130
    # The work is done or cleaned up: a Ctrl-C during interpreter shutdown must not turn
    # the exit status into "killed by SIGINT".
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if code == 130:
        # After an interrupt CPython may still report death by SIGINT at finalization;
        # everything is cleaned up already, so leave with exactly 130.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)
