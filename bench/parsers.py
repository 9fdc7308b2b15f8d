"""Benchmark: the parsers of user text on the inputs that once froze the daemon.

Prints the CPU time (time.process_time) of one call each: the plain-language parser on
"x" + ", " * n + "y" at 2.5, 5, 10 and 40 kB (as the bot gets it, then without the length
limit, which shows the patterns themselves are linear), the PagerDuty email check on
'a@' + 'b.' * 20000 + '@', and the slowest hostile shape for each parser at 40 kB.
Run: .venv/bin/python bench/parsers.py   (a benchmark, not a test: figures vary by machine)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chatopsd.core.addressing import address  # noqa: E402
from chatopsd.core.errors import UsageError  # noqa: E402
from chatopsd.core.values import is_email  # noqa: E402
from chatopsd.features.intents import parser as intents  # noqa: E402
from tests.test_parsers_linear import PARSERS, UNLIMITED, _hostile  # noqa: E402


def cpu(parse: Callable[[str], object], text: str) -> tuple[float, str]:
    start = time.process_time()
    try:
        result = parse(text)
        how = "refused" if isinstance(result, UsageError) else "answered"
    except UsageError:
        how = "refused"
    return time.process_time() - start, how


def main() -> None:
    for kb in (2.5, 5, 10, 40):
        n = int(kb * 1000 / 2)
        text = "x" + ", " * n + "y"
        took, how = cpu(intents.parse, text)
        shown = f"'x' + ', ' * {n:<5} + 'y' ({kb:>4} kB)"
        print(f"intents.parse  {shown}: {took * 1e3:8.3f} ms ({how})")
        took, how = cpu(lambda t: intents._parse(t, ()), text)
        print(f"  without the length limit:                    {took * 1e3:8.3f} ms ({how})")
    took, _ = cpu(is_email, "a@" + "b." * 20_000 + "@")
    print(f"email check    'a@' + 'b.' * 20000 + '@':          {took * 1e3:8.3f} ms")
    took, _ = cpu(lambda t: address(t, prefix="!", mentions=("<@UBOT>",)), "<@UBOT|" * 5_700)
    print(f"addressing     '<@UBOT|' * 5700 (40 kB):           {took * 1e3:8.3f} ms")
    print("slowest hostile shape per parser at 40 kB:")
    shapes = _hostile(40_000)
    for name, parse in {**PARSERS, **UNLIMITED}.items():
        worst = max((cpu(parse, text)[0], shape) for shape, text in shapes.items())
        print(f"  {name:28s} {worst[0] * 1e3:8.3f} ms  ({worst[1]})")


if __name__ == "__main__":
    main()
