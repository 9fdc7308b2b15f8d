"""The helper that reads the daemon's answers reads every line, however they arrive."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import IO

import pytest

from tests.daemon_helpers import read_json


@pytest.fixture
def pipe() -> Iterator[tuple[IO[str], IO[str]]]:
    """A pipe read as the daemon's output is (a buffered text stream), and its write end."""
    r, w = os.pipe()
    reader, writer = os.fdopen(r, "r"), os.fdopen(w, "w")
    yield reader, writer
    if not writer.closed:
        writer.close()
    reader.close()


def test_lines_that_arrive_together_are_each_read(pipe: tuple[IO[str], IO[str]]) -> None:
    # Both lines reach the pipe at once, and the write end stays open: the first read takes
    # both into the stream's buffer, and nothing more ever arrives on the descriptor.
    reader, writer = pipe
    writer.write('{"reply_to": "a"}\n{"reply_to": "b"}\n')
    writer.flush()
    assert read_json(reader, timeout=5)["reply_to"] == "a"
    assert read_json(reader, timeout=2)["reply_to"] == "b"


def test_a_line_written_in_pieces_is_read_whole(pipe: tuple[IO[str], IO[str]]) -> None:
    reader, writer = pipe
    writer.write('{"reply_to": ')
    writer.flush()
    timer = threading.Timer(0.2, lambda: (writer.write('"late"}\n'), writer.flush()))
    timer.start()
    assert read_json(reader, timeout=5) == {"reply_to": "late"}
    timer.join()


def test_no_line_and_the_end_of_output_are_told_apart(pipe: tuple[IO[str], IO[str]]) -> None:
    reader, writer = pipe
    with pytest.raises(AssertionError, match=r"no answer within 0\.2 s"):
        read_json(reader, timeout=0.2)
    writer.write('{"reply_to": "last"}\n')
    writer.close()
    assert read_json(reader, timeout=5)["reply_to"] == "last"
    for _ in range(2):  # the end stays the end
        with pytest.raises(AssertionError, match="daemon closed its output"):
            read_json(reader, timeout=5)
