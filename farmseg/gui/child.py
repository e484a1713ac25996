"""The parent's side of a job process (Qt-free): start it, send it the task, read its
messages, stop it.

The process is a fresh `farmseg --job-process` (the frozen application runs itself with
that argument), so it never depends on the caller's `__main__` module, unlike
multiprocessing's spawn, which re-imports it. See job_process for the protocol.
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import IO, Any

import farmseg
from farmseg.gui import JOB_PROCESS_ARG
from farmseg.gui.frames import read_frame, write_frame
from farmseg.gui.job_process import ChildTask

Message = tuple[Any, ...]


def job_process_command() -> list[str]:
    """The command line of a job process."""
    if getattr(sys, "frozen", False):  # the application itself is the interpreter
        return [sys.executable, JOB_PROCESS_ARG]
    return [sys.executable, "-m", "farmseg", JOB_PROCESS_ARG]


def _environment() -> dict[str, str]:
    """This environment, with the folder farmseg came from first on the module path (the
    caller may have found it through its own sys.path)."""
    env = dict(os.environ)
    if not getattr(sys, "frozen", False):
        root = str(Path(farmseg.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(
            [root, env["PYTHONPATH"]] if env.get("PYTHONPATH") else [root])
    return env


class ChildProcess:
    """A started job process working on `task`; `what` names it in messages. A reader
    thread queues its messages, so that `receive` can wait with a timeout."""

    def __init__(self, task: ChildTask, what: str) -> None:
        self.what = what
        self._messages: queue.Queue[Message | None] = queue.Queue()  # None: no more
        self._process = subprocess.Popen(job_process_command(), stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, env=_environment())
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None and stdout is not None  # both are pipes
        self._stdin: IO[bytes] = stdin
        self._stdout: IO[bytes] = stdout
        threading.Thread(target=self._read, name=f"farmseg-{what}-reader", daemon=True).start()
        self.send(task)  # if it cannot be sent, the process has died: receive() says why

    def _read(self) -> None:
        try:
            while True:
                self._messages.put(read_frame(self._stdout))
        except EOFError:
            pass
        except Exception as exc:  # a message this process cannot read: a broken install
            self._messages.put(("error", f"unreadable message from the {self.what} process "
                                         f"({exc!r})", traceback.format_exc()))
        finally:
            self._stdout.close()
            self._messages.put(None)

    def send(self, message: Any) -> bool:
        """Send one message; False if the process no longer listens."""
        try:
            write_frame(self._stdin, message)
        except (OSError, ValueError):  # a broken pipe, or stdin already closed
            return False
        return True

    def receive(self, timeout: float) -> Message | None:
        """The next message, or None if none came within `timeout` seconds; EOFError once
        the process has closed its end (exited)."""
        try:
            message = self._messages.get(timeout=timeout)
        except queue.Empty:
            return None
        if message is None:
            self._messages.put(None)  # every later call says so too
            raise EOFError(f"the {self.what} process has ended")
        return message

    def exit_reason(self, wait_s: float) -> str:
        """Why the process ended without a result (waiting up to `wait_s` for its exit)."""
        try:
            code: int | None = self._process.wait(wait_s)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None and code < 0:
            return f"the {self.what} process was killed (signal {-code}; out of memory?)"
        return f"the {self.what} process stopped unexpectedly (exit code {code})"

    def stop(self, wait_s: float) -> None:
        """Close its input, give it `wait_s` seconds to exit, then kill it."""
        with contextlib.suppress(OSError):  # what is left to flush cannot be: it is gone
            self._stdin.close()
        try:
            self._process.wait(wait_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
