"""A fresh database per broadcast test (a segment of every member sees this test's members
only), and a shop file with broadcasts of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.activities.test_shop_versions import versions_pool, versions_url  # noqa: F401 (fixtures)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

BROADCASTS = """
[segments.bc_online]
description = "テスト: オンライン会員"
sales_channel = "online"

[broadcasts.bc_weekly]
description = "週1メルマガ (テスト)"
segment = "bc_online"
template = "weekly_news"
channel = "email"
schedule = "0 10 * * MON"
holdout_percent = 10

[broadcasts.bc_once]
description = "1回限りのお知らせ (テスト)"
segment = "bc_online"
template = "weekly_news"
rate_per_second = 5

[broadcasts.bc_lost]
description = "セグメントが見つからない (テスト)"
segment = "nobody_here"
template = "weekly_news"
"""


def write_shop(directory: Path, extra: str = BROADCASTS) -> Path:
    """The example shop without its own broadcasts, with ``extra`` appended; its templates
    directory stays the example's."""
    text = (EXAMPLES / "shop.toml").read_text(encoding="utf-8")
    cut = text.find("\n[broadcasts.")
    text = text if cut < 0 else text[:cut + 1]
    text = text.replace('directory = "shop-templates"', f'directory = "{EXAMPLES / "shop-templates"}"')
    path = directory / "shop.toml"
    path.write_text(text + extra, encoding="utf-8")
    return path


@pytest.fixture
def shop_file(tmp_path: Path) -> Path:
    return write_shop(tmp_path)
