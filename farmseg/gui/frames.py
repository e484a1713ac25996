"""Length-prefixed pickle frames: how the GUI and its job processes talk over their pipes.

Only the two farmseg ends of a pipe the GUI created write these frames; never read frames
from anything else (unpickling may run code that the data names).
"""

from __future__ import annotations

import pickle
import struct
from typing import IO, Any

_HEADER = struct.Struct("<Q")  # the length of the pickle that follows


def write_frame(stream: IO[bytes], message: Any) -> None:
    """Send `message` (anything picklable) as one frame."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if data is None or len(data) < size:
        raise EOFError("the stream ended")
    return data


def read_frame(stream: IO[bytes]) -> Any:
    """The next message; EOFError when the stream ends (also in the middle of a frame)."""
    (size,) = _HEADER.unpack(_read_exactly(stream, _HEADER.size))
    return pickle.loads(_read_exactly(stream, size))
