"""``goldenroute preview --config FILE`` and ``--compare OLD NEW``: a configuration change seen on
example members before it is applied (SPEC §7, issue 10).

The members run through the real MemberWorkflow on the time-skipping server, each run on a
task queue of its own with the configuration's rules installed for it; the configuration
files are real TOML read by ``worker.shop_config``. The comparisons share one server
(``Previewer``); the CLI tests start their own.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from starter.cli import main
from starter.preview import Preview, Previewer, load_member_events, shift_occurrence
from starter.preview.command import shop_rules
from starter.preview.compare import compare
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
NORMAL = ROOT / "examples" / "normal_to_f3.ndjson"
EXAMPLES = ROOT / "examples" / "preview"
HOUR = timedelta(hours=1)

# What the loader requires of a shop file: the profile with its sender and URLs (workflows.shop).
SHOP = """\
[shop]
name = "テスト健康館"
short_name = "テスト館"
operator = "株式会社テスト"
phone = "0120-000-000"
hours = "平日9:00〜17:00"

[shop.sender]
name = "株式会社テスト"
email = "info@shop.example"
address = "東京都渋谷区神南0-0-0"
contact = "info@shop.example"

[shop.urls]
mypage = "https://shop.example/my"
resume = "https://shop.example/my/teiki"
unsubscribe = "https://shop.example/stop"
purchase = "https://shop.example/buy"
subscription = "https://shop.example/teiki"
faq = "https://shop.example/faq"
survey = "https://shop.example/q"
"""
LATER = '\n[policy]\nsend_time = "11:00"\n'
NO_S06 = "\n[scenarios.S06]\nenabled = false\n"


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("shop")
    files = {"base": SHOP, "later": SHOP + LATER, "no_s06": SHOP + NO_S06, "both": SHOP + LATER + NO_S06}
    for name, text in files.items():
        (folder / f"{name}.toml").write_text(text, encoding="utf-8")
    return {name: folder / f"{name}.toml" for name in files}


@pytest.fixture(scope="module")
async def normal(configs) -> dict[str, Preview]:
    """The F1 → F3 member (email only) under each configuration, on one server."""
    events = load_member_events(NORMAL.read_text(encoding="utf-8"))
    async with Previewer.start() as previewer:
        return {name: await previewer.run(events, 365, shop_rules(str(path))) for name, path in configs.items()}


# --- compare: what moves, appears, disappears --------------------------------------------------


async def test_a_later_send_time_moves_each_day_n_touch_by_one_hour_and_nothing_else(normal):
    base, later = normal["base"], normal["later"]
    changes = compare(base, later)

    assert changes.appeared == [] and changes.disappeared == []
    day_n = [t for t in base.touches if t.at.strftime("%H:%M") == "10:00"]
    assert len(day_n) >= 10  # S03, S04, S05, S06 and S11 steps of a year
    assert sorted(m.before.identity for m in changes.moved) == sorted(t.identity for t in day_n)
    for move in changes.moved:
        assert move.changed() == ["at"], move
        assert move.after.at - move.before.at == HOUR
        assert move.after.at.strftime("%H:%M") == "11:00"
    # What goes 'at once' (the package insert, an exit's cancellation) keeps its minute.
    assert changes.unchanged == len(base.touches) - len(day_n) > 0
    assert len(later.touches) == len(base.touches)


async def test_switching_s06_off_makes_its_touches_disappear_and_changes_nothing_else(normal):
    base = normal["base"]
    changes = compare(base, normal["no_s06"])

    s06 = [t for t in base.touches if t.scenario == "S06"]
    # Two covered by S03 / S04 (suppressed), one sent on day 28 after the third purchase.
    assert sorted(t.outcome for t in s06) == ["sent", "suppressed", "suppressed"]
    assert changes.disappeared == s06
    assert changes.appeared == [] and changes.moved == []
    assert changes.unchanged == len(base.touches) - len(s06)


async def test_switching_s06_back_on_makes_its_touches_appear(normal):
    changes = compare(normal["no_s06"], normal["base"])
    assert [t.identity for t in changes.appeared] == [t.identity for t in normal["base"].touches
                                                      if t.scenario == "S06"]
    assert changes.disappeared == [] and changes.moved == []


async def test_the_same_configuration_on_both_sides_changes_nothing_even_for_pauses_and_signals(configs):
    # A pause's and a churn signal's occurrence name their moment; the two runs start on
    # different days of the test server's clock, and still name the same touches alike.
    rules = shop_rules(str(configs["base"]))
    async with Previewer.start() as previewer:
        for name in ("05_subscriber_pauses_online", "11_subscriber_churn_signals"):
            events = load_member_events((EXAMPLES / f"{name}.ndjson").read_text(encoding="utf-8"))
            before = await previewer.run(events, 365, rules)
            after = await previewer.run(events, 365, rules)
            assert after.shift_days > before.shift_days  # the server's clock went on with the first run
            changes = compare(before, after)
            assert (changes.appeared, changes.disappeared, changes.moved) == ([], [], []), name
            assert changes.unchanged == len(before.touches) > 0
            occurrences = {t.occurrence for t in before.touches if t.scenario in ("S07", "S12")}
            if name.startswith("05"):
                assert occurrences == {"SUB-0005@2026-03-28T10:15:27+09:00"}
            else:
                assert "signal@2026-03-12T23:18:42+09:00" in occurrences


def test_an_occurrence_names_its_moment_in_the_input_timeline_again():
    tokyo = ZoneInfo("Asia/Tokyo")
    paused = "SUB-1@2026-03-28T10:15:27+09:00"
    moved = shift_occurrence(paused, 250, tokyo)
    assert moved == "SUB-1@2026-12-03T10:15:27+09:00"
    assert shift_occurrence(moved, -250, tokyo) == paused
    for plain in ("ORD-20260910-0002", "a@b", "x@2026-03-28T10:15:27"):  # an order id, no aware moment
        assert shift_occurrence(plain, 250, tokyo) == plain


# --- through the CLI ---------------------------------------------------------------------------


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["preview", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_config_alone_changes_the_previews_touches(capsys, configs):
    code, out, err = run_cli(capsys, str(NORMAL), "--json")
    assert code == 0, err
    default = json.loads(out)
    code, out, err = run_cli(capsys, str(NORMAL), "--json", "--config", str(configs["both"]))
    assert code == 0, err
    configured = json.loads(out)

    assert {t["scenario"] for t in default} >= {"S06"}
    assert "S06" not in {t["scenario"] for t in configured}
    kept = [t for t in default if t["scenario"] != "S06"]
    assert [(t["scenario"], t["step"], t["occurrence"]) for t in kept] == \
           [(t["scenario"], t["step"], t["occurrence"]) for t in configured]
    assert {t["at"][11:16] for t in configured} >= {"11:00"}
    assert "10:00" not in {t["at"][11:16] for t in configured}


def test_compare_json_is_one_object_with_appeared_disappeared_moved_and_unchanged_per_member(capsys, configs):
    code, out, err = run_cli(capsys, str(NORMAL), str(EXAMPLES / "01_sample_converts.ndjson"), "--json",
                             "--compare", str(configs["base"]), str(configs["both"]))
    assert code == 0, err
    result = json.loads(out)
    assert result["old"] == str(configs["base"]) and result["new"] == str(configs["both"])
    assert [m["member_id"] for m in result["members"]] == ["m-normal-001", "C-2025-0001"]
    for member in result["members"]:
        assert list(member) == ["member_id", "appeared", "disappeared", "moved", "unchanged"]
        assert isinstance(member["unchanged"], int)
    normal = result["members"][0]
    assert normal["appeared"] == []
    assert [(t["scenario"], t["step"]) for t in normal["disappeared"]] == [("S06", "upsell")] * 3
    for touch in normal["disappeared"]:
        assert touch["key"] == f"m-normal-001:S06:upsell:{touch['occurrence']}"
        assert touch["occurrence"].startswith("ORD-")
    testimonial = next(m for m in normal["moved"] if (m["scenario"], m["step"]) == ("S03", "testimonial"))
    assert list(testimonial) == ["key", "scenario", "step", "occurrence", "before", "after"]
    assert testimonial["key"] == "m-normal-001:S03:testimonial:ORD-20260910-0002"
    assert testimonial["before"] == {"at": "2026-09-26T10:00:00+09:00", "channel": "email", "outcome": "sent",
                                     "reason": "route:email", "variant": None}
    assert testimonial["after"] == {**testimonial["before"], "at": "2026-09-26T11:00:00+09:00"}


def test_compare_table_shows_each_change_old_to_new(capsys, configs):
    code, out, err = run_cli(capsys, str(NORMAL), "--compare", str(configs["base"]), str(configs["both"]))
    assert code == 0, err
    lines = [" ".join(line.split()) for line in out.splitlines()]  # cells one space apart
    assert lines[0].startswith("member m-normal-001 (Asia/Tokyo): 2026-09-10T12:03+09:00")
    assert lines[1] == f"{configs['base']} → {configs['both']}: 9 moved, 0 appeared, 3 disappeared, 1 unchanged"
    assert "moved 2026-09-26(土) 10:00 → 11:00 S03 F1→F2転換 testimonial email sent route:email" in lines
    assert "disappeared 2026-12-07(月) 10:00 S06 定期引上 upsell email sent route:email" in lines
    assert len(lines) == 2 + 1 + 2 + 9 + 3  # header, summary, blank, the table's head and rule, the changes


@pytest.mark.parametrize("option", ["--config", "--compare"])
def test_a_broken_configuration_exits_2_naming_file_line_and_key_and_runs_nothing(capsys, configs, tmp_path, option):
    broken = tmp_path / "broken.toml"
    text = SHOP + '\n[policy]\nsend_time = "25:00"\n'
    broken.write_text(text, encoding="utf-8")
    line = text.splitlines().index('send_time = "25:00"') + 1

    files = [str(broken)] if option == "--config" else [str(configs["base"]), str(broken)]
    code, out, err = run_cli(capsys, str(NORMAL), option, *files)
    assert code == 2
    assert out == ""
    assert f"{broken}:{line}: policy.send_time:" in err


def test_a_missing_configuration_file_exits_2(capsys, tmp_path):
    code, out, err = run_cli(capsys, str(NORMAL), "--config", str(tmp_path / "nowhere.toml"))
    assert code == 2 and out == ""
    assert "nowhere.toml: no such file" in err


def test_config_and_compare_are_one_or_the_other(capsys, configs):
    with pytest.raises(SystemExit) as exited:
        main(["preview", str(NORMAL), "--config", str(configs["base"]),
              "--compare", str(configs["base"]), str(configs["later"])])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
