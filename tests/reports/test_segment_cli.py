"""``goldenroute segment``: list, show (text and --csv), from-report, save, delete, and the
lookup order (database, the configuration applied last, --config FILE), against a fresh database."""

from __future__ import annotations

from pathlib import Path

import pytest

from starter.cli import main
from tests import datasets
from tests.reports.test_segments import UNTIL, hand_made_members

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shop.toml"
AS_OF = ["--as-of", "2026-03-31"]  # the end of that day in Tokyo: UNTIL
# The example file's segments, in its order (dormant_soon first: the test saves one of that name).
FILE_SEGMENTS = ("dormant_soon", "teiki_no_nyusan", "weekly_mailmag", "mailmag_email", "offline_lapsing")


@pytest.fixture
async def shop(report_pool, report_database_url, monkeypatch, tmp_path) -> str:
    await datasets.load(report_pool, hand_made_members(), UNTIL)
    monkeypatch.setenv("DATABASE_URL", report_database_url)
    monkeypatch.setenv("GOLDENROUTE_HOME", str(tmp_path))  # no dev stack file from elsewhere
    return report_database_url


def test_show_prints_the_count_and_a_sample(shop, capsys):
    assert main(["segment", "show", "dormant_soon", "--config", str(EXAMPLE), *AS_OF]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:5] == [
        "dormant_soon: 休眠予備軍: 2回以上購入・最終購入から60〜89日・メールかLINEで届く",
        f"  defined in  file {EXAMPLE}",
        "  criteria    F ≥ 2; days since last purchase 60–89; contactable by email or line",
        "  as of       2026-04-01 00:00+09:00",
        "  members     2",
    ]
    assert lines[6].split() == ["会員ID", "ステージ", "F", "最終購入日", "累計売上", "届くチャネル"]
    assert lines[8].split() == ["a", "f2", "2", "2026-01-26(月)", "7,960", "dm,email,line"]
    assert lines[9].split() == ["b", "f3", "3", "2026-01-01(木)", "14,920", "dm,email"]
    assert lines[10] == "all 2 shown"


def test_show_sample_and_csv(shop, capsys):
    assert main(["segment", "show", "weekly_mailmag", "--config", str(EXAMPLE), "--sample", "2", *AS_OF]) == 0
    out = capsys.readouterr().out
    assert "  members     6" in out and out.rstrip().endswith(
        "2 of 6 shown, by member id (--sample N for more, --csv for every member id)")
    assert main(["segment", "show", "weekly_mailmag", "--config", str(EXAMPLE), "--csv", *AS_OF]) == 0
    assert capsys.readouterr().out == "member_id\na\nb\nd\nf\nh\nj\n"


def test_an_unknown_segment_exits_1(shop, capsys):
    assert main(["segment", "show", "nobody"]) == 1
    err = capsys.readouterr().err
    assert "no segment 'nobody'" in err and "no --config FILE given" in err


def test_from_report_saves_a_row_and_show_lists_its_members(shop, capsys):
    assert main(["segment", "from-report", "rfm", "CHAMPIONS", *AS_OF]) == 0
    out = capsys.readouterr().out
    assert "criteria    RFM 優良" in out and "members     1" in out and "not saved" in out
    assert main(["segment", "from-report", "rfm", "要注意", "--save", "lapsing", *AS_OF]) == 0
    assert "defined in  database (rfm:要注意)" in capsys.readouterr().out
    assert main(["segment", "show", "lapsing", "--csv", *AS_OF]) == 0
    assert capsys.readouterr().out == "member_id\na\nb\ne\n"
    assert main(["segment", "from-report", "cpm", "よちよち離脱客", "--save", "lapsing"]) == 2
    assert "segments.lapsing: already saved (--replace to overwrite it)" in capsys.readouterr().err
    assert main(["segment", "from-report", "cpm", "よちよち離脱客", "--save", "lapsing", "--replace", *AS_OF]) == 0
    assert main(["segment", "show", "lapsing", "--csv", *AS_OF]) == 0
    assert capsys.readouterr().out.endswith("member_id\nc\n")
    assert main(["segment", "from-report", "rfm", "best"]) == 2
    assert "report rfm has no row 'best'" in capsys.readouterr().err


def test_the_database_comes_first_then_the_configuration_applied_last_then_the_file(shop, capsys, tmp_path):
    assert main(["segment", "save", "dormant_soon", "--where", "stage=dormant", "--description", "休眠"]) == 0
    assert capsys.readouterr().out.startswith("saved dormant_soon: stage dormant; ")
    assert main(["config", "apply", str(EXAMPLE)]) == 0
    capsys.readouterr()
    assert main(["segment", "list", "--config", str(EXAMPLE)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "defined", "in", "description", "criteria"]
    listed = [(line.split()[0], line.split("  ", 1)[1].strip().split("  ")[0]) for line in lines[2:]]
    assert listed == [
        ("dormant_soon", "database (cli)"),
        ("dormant_soon", "configuration version 1 (hidden by database (cli))"),
        *((name, "configuration version 1") for name in FILE_SEGMENTS[1:]),
        ("dormant_soon", f"file {EXAMPLE} (hidden by database (cli))"),
        *((name, f"file {EXAMPLE} (hidden by configuration version 1)") for name in FILE_SEGMENTS[1:]),
    ]
    assert "stage dormant" in lines[2] and "F ≥ 2; days since last purchase 60–89" in lines[3]
    assert main(["segment", "show", "dormant_soon", "--csv", *AS_OF]) == 0
    assert capsys.readouterr().out == "member_id\nc\n"  # the database's, not the file's a and b
    assert main(["segment", "show", "teiki_no_nyusan", *AS_OF]) == 0  # no --config: the applied version's
    out = capsys.readouterr().out
    assert "defined in  configuration version 1" in out and "members     1" in out and "\nd " in out
    assert main(["segment", "delete", "dormant_soon"]) == 0
    assert main(["segment", "delete", "dormant_soon"]) == 1
    assert main(["segment", "show", "dormant_soon", "--csv", *AS_OF]) == 0
    assert capsys.readouterr().out.endswith("member_id\na\nb\n")


def test_a_bad_definition_exits_2_naming_the_field(shop, capsys):
    assert main(["segment", "save", "x", "--where", "stage=f9", "--where", "colour=red", "--description", "d"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("goldenroute: segments.x.stage.0: Input should be 'prospect'")
    assert err[1].startswith("goldenroute: segments.x.colour: unknown key (known: description, stage,")
    assert main(["config", "apply", str(EXAMPLE)]) == 0
    capsys.readouterr()
    assert main(["segment", "save", "x", "--where", "bought=NOPE-1", "--description", "d"]) == 2
    assert capsys.readouterr().err == "goldenroute: segments.x.bought: 'NOPE-1' is not in the catalogue\n"
    assert main(["segment", "save", "Bad", "--where", "stage=f2", "--description", "d"]) == 2
    assert "segments.Bad: a segment name is a-z" in capsys.readouterr().err
    assert main(["segment", "list"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:]]
    assert names == list(FILE_SEGMENTS)  # nothing saved


def test_a_bad_shop_file_exits_2_with_its_problems(shop, capsys, tmp_path):
    broken = tmp_path / "shop.toml"
    broken.write_text(EXAMPLE.read_text(encoding="utf-8").replace('never_bought = ["NYUSAN-30"]',
                                                                 'never_bought = ["NYUSAN-99"]'), encoding="utf-8")
    (tmp_path / "shop-templates").symlink_to(EXAMPLE.parent / "shop-templates")
    assert main(["segment", "show", "teiki_no_nyusan", "--config", str(broken)]) == 2
    assert "segments.teiki_no_nyusan.never_bought: 'NYUSAN-99' is not in the catalogue" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["segment", "show", "x", "--sample", "-1"],
    ["segment", "show", "x", "--as-of", "yesterday"],
    ["segment", "from-report", "ltv", "x"],
    ["segment", "save", "x", "--description", "d"],
])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
