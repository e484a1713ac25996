"""Script PyInstaller freezes: the same entry point as the `farmseg` console script.

No arguments opens the desktop application; `farmseg segment ...` etc. run the CLI. The
GUI's job processes re-enter here with the hidden argument `--job-process`, which
farmseg._entry.run() routes first.
"""

from farmseg._entry import run

if __name__ == "__main__":
    run()
