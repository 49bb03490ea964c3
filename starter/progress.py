"""One progress bar for long CLI runs (send, import): tqdm on a terminal, nothing in a pipe, a log or CI."""

from __future__ import annotations

import sys


def progress_bar(desc: str, unit: str, total: int | None = None):
    from tqdm import tqdm

    # disable=None: tqdm shows the bar only when stderr is a terminal.
    return tqdm(total=total, desc=desc, unit=f" {unit}", disable=None, file=sys.stderr, leave=False)
