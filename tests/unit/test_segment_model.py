"""The segment model (workflows.segments): what a definition may say, and every problem naming its field."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from starter.reports.segments import CPM_SEGMENTS, RFM_SQL
from starter.segments.cli import criteria_text, where
from starter.segments.store import SegmentError, from_report, parse
from worker.shop_config import ShopConfigError, load_shop_config
from workflows.segments import CPM_CLASSES, RFM_SEGMENTS, Segment, validation_problems

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "shop.toml"


def problems(definition: dict, name: str = "lapsing") -> list[str]:
    with pytest.raises(SegmentError) as raised:
        parse(name, definition)
    return raised.value.problems


def test_the_classes_are_the_reports_own():
    assert CPM_CLASSES == CPM_SEGMENTS
    assert set(RFM_SEGMENTS) == set(re.findall(r"THEN '([^']+)'", RFM_SQL)) | {"休眠"}
    assert "ELSE '休眠'" in RFM_SQL


def test_a_definition_round_trips_through_json():
    segment = parse("dormant_soon", {
        "description": "休眠予備軍", "stage": ["f2", "f3"], "purchase_count": {"min": 2},
        "days_since_last_purchase": {"min": 60, "max": 89}, "contactable": ["email", "line"],
        "rfm": ["要注意", "R3F2"], "cpm": ["よちよち客"], "bought": ["KOSO-30"], "never_bought": ["NYUSAN-30"],
        "revenue": {"max": 30000}, "sales_channel": "online", "subscription_status": ["none"]})
    assert Segment.model_validate_json(segment.model_dump_json(exclude_none=True)) == segment
    assert criteria_text(segment) == (
        "stage f2 or f3; F ≥ 2; subscription none; RFM 要注意 or R3F2; CPM よちよち客; bought KOSO-30; "
        "never bought NYUSAN-30; days since last purchase 60–89; revenue (yen) ≤ 30000; sales channel online; "
        "contactable by email or line")
    assert criteria_text(Segment(description="all")) == "every member"


@pytest.mark.parametrize("definition, expected", [
    ({"description": "x", "stages": ["f2"]},
     "segments.lapsing.stages: unknown key (known: description, stage, purchase_count"),
    ({"description": "x", "stage": ["f9"]}, "segments.lapsing.stage.0: Input should be 'prospect'"),
    ({"description": "x", "stage": ["erased"]}, "segments.lapsing.stage.0: Input should be"),
    ({"description": "x", "stage": []}, "segments.lapsing.stage: name at least one, or leave the key out"),
    ({"description": "x", "stage": ["f2", "f2"]}, "segments.lapsing.stage: a value is listed twice"),
    ({"description": "x", "purchase_count": {"min": 3, "max": 2}}, "segments.lapsing.purchase_count: min 3 is above max 2"),
    ({"description": "x", "purchase_count": {}}, "segments.lapsing.purchase_count: give min, max or both"),
    ({"description": "x", "revenue": {"min": -1}}, "segments.lapsing.revenue.min: Input should be greater than or equal to 0"),
    ({"description": "x", "days_since_last_purchase": {"from": 60}},
     "segments.lapsing.days_since_last_purchase.from: unknown key (known: min, max)"),
    ({"description": "x", "rfm": ["champions"]}, "segments.lapsing.rfm: 'champions' is not an RFM segment"),
    ({"description": "x", "rfm": ["R6F1"]}, "segments.lapsing.rfm: 'R6F1' is not an RFM segment"),
    ({"description": "x", "cpm": ["優良"]}, "segments.lapsing.cpm: '優良' is not a CPM class"),
    ({"description": "x", "reachable": ["fax"]}, "segments.lapsing.reachable.0: Input should be 'email'"),
    ({"description": "x", "sales_channel": "shop"}, "segments.lapsing.sales_channel: Input should be 'online'"),
    ({"description": "x", "bought": ["A"], "never_bought": ["A"]},
     "segments.lapsing: bought and never_bought both name A: no member can match"),
    ({"stage": ["f2"]}, "segments.lapsing.description: Field required"),
])
def test_a_bad_definition_names_the_field(definition, expected):
    found = problems(definition)
    assert any(p.startswith(expected) for p in found), found


def test_a_bad_name_is_named():
    assert problems({"description": "x"}, name="休眠予備軍") == [
        "segments.休眠予備軍: a segment name is a-z, 0-9 and _, starting with a letter, at most 64 characters"]


def test_validation_problems_without_a_prefix_name_the_field_alone():
    with pytest.raises(ValidationError) as raised:
        Segment.model_validate({"description": "x", "stage": ["f9"]})
    assert validation_problems(raised.value, "")[0].startswith("stage.0: Input should be")


def _shop(tmp_path: Path, old: str, new: str) -> Path:
    shutil.copytree(EXAMPLE.parent / "shop-templates", tmp_path / "shop-templates")
    text = EXAMPLE.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "shop.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def test_the_example_shop_declares_its_segments():
    segments = load_shop_config(EXAMPLE).config.segments
    assert list(segments) == ["dormant_soon", "teiki_no_nyusan", "weekly_mailmag", "mailmag_email", "offline_lapsing"]
    assert segments["dormant_soon"].days_since_last_purchase.min == 60
    assert segments["teiki_no_nyusan"].never_bought == ("NYUSAN-30",)


@pytest.mark.parametrize("old, new, expected", [
    ('never_bought = ["NYUSAN-30"]', 'never_bought = ["NYUSAN-99"]',
     "segments.teiki_no_nyusan.never_bought: 'NYUSAN-99' is not in the catalogue"),
    ('never_bought = ["NYUSAN-30"]', 'bought = ["KOSO-SAMPLE-7"]',
     "segments.teiki_no_nyusan.bought: 'KOSO-SAMPLE-7' is a sample: samples are requested, not bought"),
    ('never_bought = ["NYUSAN-30"]', 'bought = ["GIFT-WRAP"]',
     "segments.teiki_no_nyusan.bought: 'GIFT-WRAP' is ignored (ignore = true): its lines never reach the engine"),
    ("[segments.weekly_mailmag]", "[segments.Weekly]",
     "segments.Weekly: String should match pattern '^[a-z][a-z0-9_]{0,63}$' (the key itself)"),
    ('contactable = ["email", "line"]\n\n#', 'contactable = ["email", "line"]\nstage = ["f9"]\n\n#',
     "segments.dormant_soon.stage.0: Input should be 'prospect'"),
    ("days_since_last_purchase = { min = 60, max = 89 }", "days_since_last_purchases = { min = 60, max = 89 }",
     'segments.dormant_soon.days_since_last_purchases: unknown key; did you mean "days_since_last_purchase"?'),
    ("days_since_last_purchase = { min = 60, max = 89 }", "days_since_last_purchase = { min = 90, max = 89 }",
     "segments.dormant_soon.days_since_last_purchase: min 90 is above max 89"),
])
def test_a_shop_file_names_the_segment_key_and_line(tmp_path, old, new, expected):
    path = _shop(tmp_path, old, new)
    with pytest.raises(ShopConfigError) as raised:
        load_shop_config(path)
    [problem] = raised.value.problems
    assert re.match(rf"^{re.escape(str(path))}:\d+: ", problem), problem
    assert problem.split(": ", 1)[1].startswith(expected), problem


def test_the_catalogue_check_is_skipped_without_a_catalogue():
    from workflows.segments import segment_problems

    assert segment_problems("x", Segment(description="x", bought=("ANY-SKU",)), {}) == []


@pytest.mark.parametrize("pairs, expected", [
    (["stage=f2,f3"], {"stage": ["f2", "f3"]}),
    (["purchase_count=2.."], {"purchase_count": {"min": 2}}),
    (["days_since_last_purchase=60..89"], {"days_since_last_purchase": {"min": 60, "max": 89}}),
    (["revenue=..5000"], {"revenue": {"max": 5000}}),
    (["purchase_count=3"], {"purchase_count": {"min": 3, "max": 3}}),
    (["sales_channel=online", "contactable=email,line"], {"sales_channel": "online", "contactable": ["email", "line"]}),
])
def test_where_pairs(pairs, expected):
    assert where(pairs) == expected


@pytest.mark.parametrize("pairs, expected", [
    (["stage"], "--where 'stage': write KEY=VALUE"),
    (["stage=f2", "stage=f3"], "--where stage: given twice"),
    (["revenue=a..b"], "--where revenue: 'a..b' is not a range"),
])
def test_bad_where_pairs(pairs, expected):
    with pytest.raises(SegmentError) as raised:
        where(pairs)
    assert raised.value.problems[0].startswith(expected)


def test_from_report_rows():
    assert from_report("rfm", "champions")[1] == "rfm:優良"
    assert from_report("rfm", "About-To-Sleep")[0].rfm == ("離脱予備",)
    assert from_report("rfm", "r3f2")[0].rfm == ("R3F2",)
    assert from_report("cpm", "初回離脱客")[0].cpm == ("初回離脱客",)
    for report, row in (("rfm", "R9F9"), ("rfm", "best"), ("cpm", "優良"), ("ltv", "x")):
        with pytest.raises(SegmentError):
            from_report(report, row)
