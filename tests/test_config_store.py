"""``goldenroute config apply`` and ``config versions``: the real CLI against a fresh database."""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from starter.cli import main
from activities.shop_versions import ShopVersion
from starter.config_store import apply_at_start, changes
from tests.activities.test_shop_versions import EXAMPLES, versions_url  # noqa: F401 (a fixture)
from worker.settings import Settings
from worker.shop_config import parse_shop_config

WHEN = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+09:00)"


@pytest.fixture
def cli_database(versions_url, monkeypatch, tmp_path) -> str:  # noqa: F811
    monkeypatch.setenv("DATABASE_URL", versions_url)
    monkeypatch.setenv("GOLDENROUTE_HOME", str(tmp_path / "home"))  # no dev stack file from elsewhere
    monkeypatch.delenv("CONFIG_LEAD_SECONDS", raising=False)
    monkeypatch.delenv("CONFIG_REFRESH_SECONDS", raising=False)
    return versions_url


@pytest.fixture
def shop_file(tmp_path) -> Path:
    """A copy of the example shop and its templates, for a test to change."""
    shutil.copy(EXAMPLES / "shop.toml", tmp_path / "shop.toml")
    shutil.copytree(EXAMPLES / "shop-templates", tmp_path / "shop-templates")
    return tmp_path / "shop.toml"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_apply_says_when_and_what_changed_and_versions_lists_them(cli_database, shop_file, capsys):
    assert main(["config", "apply", str(shop_file)]) == 0
    first = capsys.readouterr().out.strip()
    match = re.fullmatch(rf"version 1 takes effect at {WHEN} \(in 60 s\); the first configuration applied "
                         r"\(before it, the built-in example shop\)", first)
    assert match, first
    effective = datetime.fromisoformat(match[1])
    assert timedelta(seconds=55) < effective - datetime.now().astimezone() <= timedelta(seconds=60)

    assert main(["config", "apply", str(shop_file), "--note", "again"]) == 0
    assert capsys.readouterr().out.strip() == "unchanged: version 1 is already this configuration"

    edit(shop_file, 'send_time = "10:00"', 'send_time = "11:00"')
    edit(shop_file, "holdout_percent = 10", "holdout_percent = 20")
    shop_file.write_text(shop_file.read_text(encoding="utf-8") + "\n[scenarios.S06]\nenabled = false\n",
                         encoding="utf-8")
    template = shop_file.parent / "shop-templates" / "S06" / "upsell.line.j2"
    template.write_text(template.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert main(["config", "apply", str(shop_file), "--note", "send at 11, S06 off"]) == 0
    second = capsys.readouterr().out.strip()
    assert re.fullmatch(
        rf"version 2 takes effect at {WHEN} \(in 60 s\); changed: policy.send_time 10:00 → 11:00, "
        r"policy.holdout_percent 10 → 20, scenarios.S06.enabled true → false, "
        r"templates S06/upsell.line.j2 changed", second), second

    assert main(["config", "versions"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["version", "applied_at", "effective_at", "digest", "state", "note"]
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines[2:]]
    assert [r[0] for r in rows] == ["1", "2"]
    assert rows[1][-2:] == ["pending", "send at 11, S06 off"]  # not in force for another minute
    assert all(re.fullmatch(WHEN, r[1]) and re.fullmatch(WHEN, r[2]) and re.fullmatch("[0-9a-f]{12}", r[3])
               for r in rows)


def test_versions_before_any_apply(cli_database, capsys):
    assert main(["config", "versions"]) == 0
    assert "built-in example shop (version 0)" in capsys.readouterr().out


def test_an_invalid_file_is_not_applied(cli_database, shop_file, capsys):
    edit(shop_file, "every_days = 180", "every_days = 3")
    assert main(["config", "apply", str(shop_file)]) == 1
    err = capsys.readouterr().err
    assert "scenarios.S08.every_days" in err and "shop.toml:" in err
    assert main(["config", "versions"]) == 0
    assert "version 0" in capsys.readouterr().out  # nothing stored

    template = shop_file.parent / "shop-templates" / "S06" / "upsell.line.j2"
    edit(shop_file, "every_days = 3", "every_days = 180")
    template.write_text("{{ shop.name ", encoding="utf-8")  # valid names, but it cannot render
    assert main(["config", "apply", str(shop_file)]) == 1
    assert "S06/upsell.line.j2" in capsys.readouterr().err
    assert main(["config", "versions"]) == 0
    assert "version 0" in capsys.readouterr().out


async def test_dev_applies_the_named_file_once_and_only_that(versions_url, shop_file):  # noqa: F811
    settings = Settings(database_url=versions_url, home=shop_file.parent / "home")
    assert await apply_at_start(settings) == (
        "the built-in example shop (version 0); GOLDENROUTE_SHOP_CONFIG=FILE applies your own")
    named = settings.model_copy(update={"shop_config": shop_file})
    first = await apply_at_start(named)
    assert re.fullmatch(rf"{re.escape(str(shop_file))}: version 1 takes effect at {WHEN} \(in 60 s\); .*", first)
    assert await apply_at_start(named) == f"{shop_file}: unchanged: version 1 is already this configuration"
    assert await apply_at_start(settings) == "version 1 (`goldenroute config versions`)"
    edit(shop_file, "every_days = 180", "every_days = 3")
    with pytest.raises(RuntimeError, match="GOLDENROUTE_SHOP_CONFIG cannot be applied:\n.*scenarios.S08.every_days"):
        await apply_at_start(named)


def test_changes_name_each_key_and_a_new_entry_once():
    def version(text: str, number: int) -> ShopVersion:
        loaded = parse_shop_config(text, "shop.toml", EXAMPLES)
        return ShopVersion(number, datetime.now().astimezone(), loaded.digest, loaded.config, loaded.templates)

    text = (EXAMPLES / "shop.toml").read_text(encoding="utf-8")
    before = version(text, 1)
    after = version(text.replace("variants = { gift = 50, secret_sale = 50 }", "variants = { gift = 70, secret_sale = 30 }")
                    .replace('[catalogue."GIFT-WRAP"]', '[catalogue."NEW-1"]\nname = "新商品"\nrole = "cross"\n'
                             'days_supply = 30\n\n[catalogue."GIFT-WRAP"]')
                    + '\n[scenarios.S10]\nenabled = false\n\n[scenarios.S11.steps.comeback_offer]\nenabled = false\n', 2)
    assert changes(before, after) == [
        "catalogue.NEW-1 added",
        "scenarios.S08.variants.gift 50 → 70", "scenarios.S08.variants.secret_sale 50 → 30",
        "scenarios.S11.steps.comeback_offer.enabled true → false",
        "scenarios.S10.enabled true → false",
    ]
    assert changes(after, before)[0] == "catalogue.NEW-1 removed"
    assert changes(before, before) == []
