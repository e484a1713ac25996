"""Script PyInstaller freezes: the same entry point as the `farmseg` console script.

No arguments opens the desktop application; `farmseg segment ...` etc. run the CLI. The
spawned job processes of the GUI re-enter here and are routed by freeze_support(), which
farmseg._entry.run() calls first.
"""

from farmseg._entry import run

if __name__ == "__main__":
    run()
