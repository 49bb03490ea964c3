"""``goldenroute report``: the CLI over the reports, against its own fresh database."""

from __future__ import annotations

import csv
import io
import json
import sys
import types

import pytest

from starter.cli import main
from tests.factories import jst, order, sample
from tests.reports.conftest import touch, write, write_touches

FUNNEL_COLUMNS = ["step", "label", "members", "from_previous", "rate", "median_days"]


@pytest.fixture
async def shop(report_pool, report_database_url, monkeypatch, tmp_path) -> str:
    """Two members in a fresh database; DATABASE_URL points the CLI at it."""
    await write(report_pool, [
        sample("cli-a", jst(2026, 1, 1), "a-s"), order("cli-a", jst(2026, 1, 11), "a-1"),
        order("cli-a", jst(2026, 2, 10), "a-2"), order("cli-b", jst(2026, 1, 5), "b-1"),
    ])
    await write_touches(report_pool, [
        touch("cli-a", "S03", "thanks_insert", "a-1", "sent", jst(2026, 1, 11)),
        touch("cli-b", "S03", "thanks_insert", "b-1", "holdout", jst(2026, 1, 5)),
    ])
    monkeypatch.setenv("DATABASE_URL", report_database_url)
    monkeypatch.setenv("GOLDENROUTE_HOME", str(tmp_path))  # no dev stack file from elsewhere
    return report_database_url


def test_json_prints_the_columns_and_rows(shop, capsys):
    assert main(["report", "funnel", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["report"] == "funnel"
    assert report["columns"] == FUNNEL_COLUMNS
    rows = {r["step"]: r for r in report["rows"]}
    assert (rows["sample_or_trial"]["members"], rows["f1"]["members"], rows["f2"]["members"]) == (1, 2, 1)
    assert (rows["f1"]["from_previous"], rows["f1"]["rate"], rows["f1"]["median_days"]) == (1, 1.0, 10.0)


def test_csv_prints_a_header_row(shop, capsys):
    assert main(["report", "funnel", "--csv", "--from", "2026-01-01", "--to", "2026-12-31"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == FUNNEL_COLUMNS
    assert [r[0] for r in rows[1:]] == ["sample_or_trial", "f1", "f2", "f3", "established"]
    assert rows[2][2] == "2"


def test_text_is_an_aligned_table(shop, capsys):
    assert main(["report", "scenarios"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("シナリオ別KPI")
    assert lines[2].split()[:3] == ["scenario", "name", "variant"]
    s03 = next(line for line in lines if line.startswith("S03"))
    # entered 2, holdout 1, touched 1, converted 1 (a's F2 on day 30), holdout converted 0
    assert s03.split()[4:9] == ["60", "2", "1", "1", "1"]
    # columns line up, counting a wide character as two: "60" ends under "window_days"
    from starter.reports import _width
    header = lines[2]
    assert _width(s03[:s03.index(" 60 ") + 3]) == _width(header[:header.index("window_days") + len("window_days")])


def test_the_migrations_run_first_on_a_fresh_database(report_database_url, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DATABASE_URL", report_database_url)
    monkeypatch.setenv("GOLDENROUTE_HOME", str(tmp_path))
    assert main(["report", "cpm", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["rows"]) == 10


@pytest.mark.parametrize("argv, message", [
    (["report", "nope"], "unknown report 'nope'"),
    (["report", "funnel", "--from", "2026-13-01"], "not a date"),
    (["report", "funnel", "--json", "--csv"], "not allowed with"),
])
def test_bad_arguments_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


def test_a_period_that_ends_before_it_starts_exits_2(shop, capsys):
    assert main(["report", "ltv", "--from", "2026-02-01", "--to", "2026-01-01"]) == 2
    assert "after --to" in capsys.readouterr().err


def test_dashboard_calls_write_dashboard(shop, monkeypatch, tmp_path, capsys):
    calls = []

    async def write_dashboard(pool, out, start, end):
        calls.append((out, start, end, await pool.fetchval("SELECT count(*) FROM orders")))
        out.write_text("<html></html>")

    monkeypatch.setitem(sys.modules, "starter.dashboard", types.SimpleNamespace(write_dashboard=write_dashboard))
    out = tmp_path / "d.html"
    assert main(["report", "dashboard", "--out", str(out), "--from", "2026-01-01"]) == 0
    import datetime as dt
    assert calls == [(out, dt.date(2026, 1, 1), None, 4)]
    assert out.read_text() == "<html></html>"
    assert "wrote" in capsys.readouterr().out
