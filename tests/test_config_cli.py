"""``goldenroute config check`` and ``config show`` on the example shop and on broken copies of it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from starter.cli import main
from starter.config_cli import template_check
from starter.config_view import effective
from worker.shop_config import load_shop_config
from workflows.scenarios import Scenario
from workflows.shop import ShopConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXAMPLE = EXAMPLES / "shop.toml"


def shop_copy(tmp_path: Path, old: str = "", new: str = "") -> Path:
    shutil.copytree(EXAMPLES / "shop-templates", tmp_path / "shop-templates")
    path = tmp_path / "shop.toml"
    path.write_text(EXAMPLE.read_text(encoding="utf-8").replace(old, new, 1), encoding="utf-8")
    return path


def test_check_passes_the_example_and_says_what_it_configures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert f"{EXAMPLE}: OK — ゴールデンルート健康館" in out
    assert "15 SKUs: 5 main, 3 cross, 2 trial, 3 sample, 2 ignored" in out
    assert "off: none" in out and "send at 10:00" in out
    assert load_shop_config(EXAMPLE).digest[:12] in out


def test_check_lists_the_broadcasts_with_segment_channel_and_schedule(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(EXAMPLE)]) == 0
    lines = capsys.readouterr().out.splitlines()
    segments = next(i for i, line in enumerate(lines) if line.startswith("  segments   "))
    assert lines[segments + 1] == (
        "  broadcasts weekly_news (mailmag_email, email, 0 10 * * MON), monthly_dm (offline_lapsing, dm, 0 9 1 * *), "
        "nyusan_trial (teiki_no_nyusan, routed, by hand); schedules in Asia/Tokyo")

    path = shop_copy(tmp_path)
    text = path.read_text(encoding="utf-8")
    path.write_text(text[:text.index("\n[broadcasts.") + 1], encoding="utf-8")
    shutil.rmtree(tmp_path / "shop-templates" / "BC")  # no broadcast's copy without a broadcast
    assert main(["config", "check", str(path)]) == 0
    assert "\n  broadcasts none\n" in capsys.readouterr().out


def test_check_prints_each_problem_with_its_line_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = shop_copy(tmp_path, "every_days = 180", "every_days = 3")
    line = path.read_text(encoding="utf-8").splitlines().index("every_days = 3") + 1
    assert main(["config", "check", str(path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{path}:{line}: scenarios.S08.every_days: Input should be greater than or equal to 7"]


def test_check_names_scenarios_and_steps_switched_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = shop_copy(tmp_path, "# [scenarios.S10]\n# enabled = false",
                     "[scenarios.S10]\nenabled = false\n\n[scenarios.S03.steps.survey]\nenabled = false")
    assert main(["config", "check", str(path)]) == 0
    assert "on: S01 S02 S03 S04 S05 S06 S07 S08 S09 S11 S12; off: S03.survey S10" in capsys.readouterr().out


def test_check_fails_on_a_shop_template_that_cannot_render(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    if template_check() is None:
        pytest.skip("this build has no activities.render.check_templates")
    path = shop_copy(tmp_path)
    override = tmp_path / "shop-templates" / "S06" / "upsell.line.j2"
    override.write_text(override.read_text(encoding="utf-8").replace("urls.subscription", "urls.no_such_page"),
                        encoding="utf-8")
    assert main(["config", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "S06/upsell.line.j2" in out and "no_such_page" in out and "OK" not in out


def test_show_json_is_the_whole_configuration_and_reads_back(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", str(EXAMPLE), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    config = load_shop_config(EXAMPLE).config
    assert ShopConfig.model_validate(shown) == effective(config)
    # every default is written out: all twelve scenarios with their steps, the policy, S08's numbers
    assert list(shown["scenarios"]) == [s.value for s in Scenario]
    assert shown["scenarios"]["S12"]["steps"]["follow_up_faq"]["enabled"] is True
    assert shown["scenarios"]["S08"] | {"steps": None} == {
        "enabled": True, "steps": None, "variants": {"gift": 50, "secret_sale": 50}, "holdout_percent": 10,
        "from_purchase": 4, "every_days": 180}
    assert shown["policy"]["allowed_hours"]["line"] == {"start": "09:00", "end": "21:00"}
    # and it decides exactly as the file does
    filled, written = effective(config).rules(), config.rules()
    for scenario in Scenario:
        assert filled.loyalty() == written.loyalty()
        assert filled.variants(scenario, ("gift", "secret_sale")) == written.variants(scenario, ("gift", "secret_sale"))
        assert filled.holdout_percent(scenario) == written.holdout_percent(scenario)
    assert filled.policy == written.policy


def test_show_prints_readable_sections(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    for section in ("[shop]", "[catalogue] 15 SKUs", "[policy]", "[scenarios]", "[templates]"):
        assert f"\n{section}\n" in out
    assert "sender.address" in out and "urls.pages.voice" in out
    assert "purchase + 120 d (shop)" in out  # S11's second step, as the file sets it
    assert "anchor + supply; 90-day products: anchor + 30 d (shop)" in out  # S05 for the 90-day bundle
    assert "purchase + supply - 2 d" in out  # S06 as the SPEC times it
    assert "S06/upsell.line.j2" in out


def test_show_of_a_broken_file_prints_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = shop_copy(tmp_path, 'directory = "shop-templates"', 'directory = "gone"')
    assert main(["config", "show", str(path), "--json"]) == 1
    assert "templates.directory" in capsys.readouterr().out
