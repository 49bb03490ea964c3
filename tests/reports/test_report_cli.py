"""``goldenroute report``: the CLI over the reports, against its own fresh database."""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import subprocess
import sys
import types
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from starter.cli import main
from starter.table import width
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
    assert list(report) == ["report", "title", "start", "end", "as_of", "columns", "rows"]
    assert report["report"] == "funnel"
    assert report["columns"] == FUNNEL_COLUMNS  # identifiers, not the terminal's headings
    assert list(report["rows"][0]) == FUNNEL_COLUMNS
    rows = {r["step"]: r for r in report["rows"]}
    assert (rows["sample_or_trial"]["members"], rows["f1"]["members"], rows["f2"]["members"]) == (1, 2, 1)
    assert (rows["f1"]["from_previous"], rows["f1"]["rate"], rows["f1"]["median_days"]) == (1, 1.0, 10.0)


def test_csv_prints_a_header_row(shop, capsysbinary):
    assert main(["report", "funnel", "--csv", "--from", "2026-01-01", "--to", "2026-12-31"]) == 0
    out = capsysbinary.readouterr().out
    # UTF-8 with a BOM, so that Japanese Excel opens it as UTF-8; CRLF as Excel writes CSV.
    assert out.startswith(codecs.BOM_UTF8 + b"step,label,")
    text = out.decode("utf-8-sig")
    assert text.endswith("\r\n") and text.count("\r\n") == text.count("\n") == 6
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == FUNNEL_COLUMNS  # identifiers: a machine reads them
    assert [r[0] for r in rows[1:]] == ["sample_or_trial", "f1", "f2", "f3", "established"]
    assert rows[2][1] == "F1 初回購入" and rows[2][2] == "2"


def test_text_has_japanese_headings_and_the_shops_time(shop, capsys):
    assert main(["report", "cpm", "--to", "2026-06-30"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # as of the end of --to: 00:00 on 1 July in Tokyo (15:00 on 30 June in UTC)
    assert lines[0] == "顧客ポートフォリオ (CPM) — 期間 … 〜 2026-06-30 / 基準日時 2026-07-01 00:00 JST"
    assert lines[2].split() == ["セグメント", "会員数", "累計売上", "平均売上", "会員構成比"]

    assert main(["report", "ltv"]) == 0  # as of now
    title = capsys.readouterr().out.splitlines()[0]
    shown = datetime.strptime(title.split("基準日時 ")[1], "%Y-%m-%d %H:%M JST").replace(tzinfo=ZoneInfo("Asia/Tokyo"))
    assert abs(shown - datetime.now(ZoneInfo("Asia/Tokyo"))) < timedelta(minutes=2)


def test_no_identifier_is_a_heading_on_the_terminal(shop, capsys):
    from starter.reports import REPORTS

    for name, spec in REPORTS.items():
        assert main(["report", name]) == 0
        headings = capsys.readouterr().out.splitlines()[2].split()
        assert headings == list(spec.headers), name
        assert not set(headings) & (set(spec.columns) - {"KPI", "R", "F"}), name


def test_text_is_an_aligned_table(shop, capsys):
    assert main(["report", "scenarios"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("シナリオ別KPI")
    assert lines[2].split()[:6] == ["シナリオ", "シナリオ名", "パターン", "回", "KPI", "計測日数"]
    s03 = next(line for line in lines if line.startswith("S03"))
    # entered 2, holdout 1, touched 1, (suppressed, its reasons, expired: a broadcast's), converted 1
    # (a's F2 on day 30), holdout converted 0
    assert s03.split()[5:14] == ["60", "2", "1", "1", "-", "-", "-", "1", "1.000"]
    # columns line up, counting a wide character as two: "60" ends under "計測日数"
    header = lines[2]
    assert width(s03[:s03.index(" 60 ") + 3]) == width(header[:header.index("計測日数") + len("計測日数")])


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


# --- a closed pipe: `goldenroute report … | head -1` -----------------------------------------

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "starter.cli"]  # starter.cli's run(): the console script's own exit path


def test_a_reader_that_goes_away_ends_the_report_quietly_with_0(shop):
    # `| head -1`, literally (head may read everything before it exits: then no pipe breaks) …
    piped = subprocess.run(["bash", "-o", "pipefail", "-c", f"{' '.join(CLI)} report scenarios | head -1"],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert (piped.returncode, piped.stdout, piped.stderr) == (0, "シナリオ別KPI (ホールドアウト比較) — 期間 全期間\n", "")
    # … and a reader that is gone before the first byte, so that the write certainly fails (EPIPE).
    for output in ([], ["--csv"], ["--json"]):
        run = subprocess.Popen([*CLI, "report", "scenarios", *output], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        run.stdout.close()
        err = run.stderr.read().decode()
        assert run.wait(timeout=120) == 0, err
        assert "Traceback" not in err and "Broken pipe" not in err and "Errno" not in err


@pytest.mark.parametrize("output", [[], ["--csv"], ["--json"]])
def test_main_with_a_closed_pipe_for_stdout_returns_0(shop, monkeypatch, capsys, output):
    read, write = os.pipe()
    os.close(read)
    closed = open(write, "w", encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", closed)
    try:
        assert main(["report", "funnel", *output]) == 0
    finally:
        closed.close()  # what was left in its buffer goes to /dev/null now, without an error
    assert capsys.readouterr().err == ""
