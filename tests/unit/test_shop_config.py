"""The shop configuration file: it loads, and each problem names the file, the line and the key."""

from __future__ import annotations

import re
import shutil
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

from starter.ingress.carts import load_catalogue
from worker.shop_config import ShopConfigError, load_shop_config, parse_shop_config
from worker.shop_problems import split_dotted
from worker.toml_lines import key_lines, line_of

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "shop.toml"


def shop_copy(tmp_path: Path, *replacements: tuple[str, str], append: str = "") -> Path:
    """The example shop (and its templates) in ``tmp_path``, each (old, new) replaced once."""
    text = EXAMPLE.read_text(encoding="utf-8")
    for old, new in replacements:
        assert text.count(old) >= 1, old
        text = text.replace(old, new, 1)
    shutil.copytree(EXAMPLE.parent / "shop-templates", tmp_path / "shop-templates")
    path = tmp_path / "shop.toml"
    path.write_text(text + append, encoding="utf-8")
    return path


def line_with(path: Path, fragment: str) -> int:
    """The 1-based line ``fragment`` is first on."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines) if fragment in line) + 1


def problems_of(path: Path) -> tuple[str, ...]:
    with pytest.raises(ShopConfigError) as raised:
        load_shop_config(path)
    return raised.value.problems


def test_the_example_shop_loads_with_its_catalogue_policy_scenarios_and_template() -> None:
    shop = load_shop_config(EXAMPLE)
    config = shop.config
    catalogue_only = tomllib.loads((ROOT / "examples" / "catalogue.toml").read_text(encoding="utf-8"))
    assert set(config.catalogue) == set(catalogue_only["catalogue"])
    assert all(config.catalogue[sku].cross for sku, p in config.catalogue.items() if p.role == "main")
    assert config.catalogue["KOSO-SAMPLE-7"].leads_to == "KOSO-30"
    assert config.shop.sender.address and config.shop.urls.pages["voice"].startswith("https://")
    rules = config.rules(3)
    assert rules.loyalty() == (4, timedelta(days=180))
    assert rules.variants("S08", ()) == (("gift", 1), ("secret_sale", 1))
    assert rules.policy.send_time.hour == 10 and rules.holdout_percent("S01") == 10
    assert rules.timing_of("S05", "member_benefits", 90).days == 30
    assert rules.timing_of("S11", "new_product", 30).days == 120
    assert shop.templates.keys() == {"S06/upsell.line.j2", "BC/weekly_news.j2", "BC/monthly_dm.j2",
                                     "BC/cross_campaign.j2", "BC/cross_campaign.line.j2"}
    assert set(config.broadcasts) == {"weekly_news", "monthly_dm", "nyusan_trial"}
    assert "{% extends layout %}" in shop.templates["S06/upsell.line.j2"]
    assert re.fullmatch(r"[0-9a-f]{64}", shop.digest)


def test_the_digest_covers_the_file_and_the_templates(tmp_path: Path) -> None:
    path = shop_copy(tmp_path)
    first = load_shop_config(path).digest
    assert load_shop_config(path).digest == first
    (tmp_path / "shop-templates" / "S06" / "upsell.line.j2").write_text("{% extends layout %}\n", encoding="utf-8")
    second = load_shop_config(path).digest
    path.write_text(path.read_text(encoding="utf-8") + "\n# a comment\n", encoding="utf-8")
    assert len({first, second, load_shop_config(path).digest}) == 3


def test_a_value_out_of_range_names_file_line_and_key(tmp_path: Path) -> None:
    path = shop_copy(tmp_path, ("every_days = 180", "every_days = 3"))
    assert problems_of(path) == (
        f"{path}:{line_with(path, 'every_days = 3')}: scenarios.S08.every_days: "
        "Input should be greater than or equal to 7",)


def test_an_unknown_key_is_named_with_the_key_it_is_closest_to(tmp_path: Path) -> None:
    path = shop_copy(tmp_path, ('mypage = "https', 'mypgae = "https'), ("from_purchase = 4", "from_purchas = 4"))
    problems = problems_of(path)
    assert f'{path}:{line_with(path, "mypgae =")}: shop.urls.mypgae: unknown key; did you mean "mypage"?' in problems
    # the key it meant is then missing: reported on its table's line
    assert f"{path}:{line_with(path, '[shop.urls]')}: shop.urls.mypage: Field required" in problems
    assert (f'{path}:{line_with(path, "from_purchas =")}: scenarios.S08.from_purchas: unknown key; '
            f'did you mean "from_purchase"?') in problems


def test_an_unknown_key_with_nothing_close_lists_the_known_ones(tmp_path: Path) -> None:
    path = shop_copy(tmp_path, ("{ touches = 3, days = 7 }", "{ touches = 3, weeks = 1 }"))
    assert problems_of(path) == (f"{path}:{line_with(path, 'weeks = 1')}: policy.frequency_cap.weeks: "
                                 "unknown key (known here: touches, days)",)


def test_a_cross_product_not_in_the_catalogue_is_named_with_its_line(tmp_path: Path) -> None:
    path = shop_copy(tmp_path, ('cross = ["SHAKER-01", "NYUSAN-30"]', 'cross = ["SHAKER-99", "NYUSAN-30"]'))
    assert problems_of(path) == (
        f"{path}:{line_with(path, 'SHAKER-99')}: catalogue.AOJIRU-30.cross: 'SHAKER-99' is not in the catalogue",)


def test_each_consistency_problem_is_located_on_its_own(tmp_path: Path) -> None:
    path = shop_copy(tmp_path, ('similar = ["KOSO-30"]', 'similar = ["NYUSAN-30"]'),
                     ('leads_to = "AOJIRU-30"', 'leads_to = "AOJIRU-31"'))
    similar = line_with(path, 'similar = ["NYUSAN-30"]')
    assert problems_of(path) == (
        f"{path}:{similar}: catalogue.AOJIRU-30.similar: "
        "'NYUSAN-30' is a cross product, not a main one",
        f"{path}:{line_with(path, 'AOJIRU-31')}: catalogue.AOJIRU-TRIAL-7.leads_to: "
        "'AOJIRU-31' is not in the catalogue",
    )


def test_moving_a_step_the_seed_times_is_refused_naming_the_step(tmp_path: Path) -> None:
    path = shop_copy(tmp_path, append="\n[scenarios.S07.steps.resume_link]\ndays = 45\n")
    assert problems_of(path) == (
        f"{path}:{line_with(path, '[scenarios.S07.steps.resume_link]')}: scenarios.S07.steps.resume_link: "
        "the seed fixes this step's timing; it can be switched off, not moved",)
    switched_off = shop_copy(tmp_path / "off", append="\n[scenarios.S07.steps.resume_link]\nenabled = false\n")
    assert not load_shop_config(switched_off).config.rules().step_enabled("S07", "resume_link")


def test_a_scenario_key_that_is_no_scenario_is_named(tmp_path: Path) -> None:
    path = shop_copy(tmp_path, append="\n[scenarios.S13]\nenabled = false\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:{line_with(path, '[scenarios.S13]')}: scenarios.S13: Input should be 'S01'")
    assert problem.endswith("(the key itself)")


def test_a_missing_templates_directory_names_the_key(tmp_path: Path) -> None:
    path = shop_copy(tmp_path, ('directory = "shop-templates"', 'directory = "shop-templatez"'))
    assert problems_of(path) == (
        f"{path}:{line_with(path, 'directory = ')}: templates.directory: {tmp_path / 'shop-templatez'} "
        "is not a directory",)


@pytest.mark.parametrize(("name", "problem"), [
    ("S06/upsel.j2", "S06 has no step 'upsel' (it has upsell)"),
    ("S08/loyalty_offer.gfit.email.j2", "S08 has no variant 'gfit' (its variants: gift, secret_sale"),
    ("S06/upsell.lin.j2", "S06 has no variant 'lin' (it has no variants; or 'lin' is not a channel"),
    ("S07/resume_call.email.j2", "S07.resume_call never goes out on email (only on call_center)"),
    ("_layouts/fax.j2", "no channel 'fax' for a layout"),
    ("BC/Weekly-News.j2", "'Weekly-News' is not a broadcast template's name"),
    ("BC/weekly_news.insert.j2", "expected BC/<template>[.<channel>].j2: 'insert' is not a channel a broadcast can use"),
    ("BC/weekly_news.gift.email.j2", "expected BC/<template>[.<channel>].j2: 'gift.email' is not a channel"),
    ("BC/deep/weekly_news.j2", "expected <S01..S12>/<step>[.<variant>][.<channel>].j2, BC/<template>[.<channel>].j2"),
    ("S13/upsell.j2", "expected <S01..S12>/<step>[.<variant>][.<channel>].j2"),
    ("S06/deep/upsell.j2", "expected <S01..S12>/<step>"),
    ("upsell.j2", "expected <S01..S12>/<step>"),
])
def test_a_template_file_the_renderer_would_not_use_is_named(tmp_path: Path, name: str, problem: str) -> None:
    path = shop_copy(tmp_path)
    file = tmp_path / "shop-templates" / name
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text("{% extends layout %}\n", encoding="utf-8")
    (found,) = problems_of(path)
    assert found.startswith(f"{file}: {problem}")


def test_template_names_the_renderer_uses_are_accepted(tmp_path: Path) -> None:
    path = shop_copy(tmp_path)
    own = len(load_shop_config(path).templates)
    for name in ("S08/loyalty_offer.gift.j2", "S08/loyalty_offer.secret_sale.dm.j2", "S07/resume_call.call_center.j2",
                 "S01/sample_insert.insert.j2", "_layouts/email.j2", "_parts/upsell.j2", "_parts/footer-jp.j2",
                 "BC/spring_sale.j2", "BC/weekly_news.push.j2", "_layouts/push.j2"):
        file = tmp_path / "shop-templates" / name
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text("x", encoding="utf-8")
    (tmp_path / "shop-templates" / "README.md").write_text("not a template", encoding="utf-8")
    assert len(load_shop_config(path).templates) == own + 10


def test_a_toml_syntax_error_keeps_the_line_and_column(tmp_path: Path) -> None:
    path = shop_copy(tmp_path, ('phone = "0120-000-000"', 'phone = 0120-000-000"'))
    (problem,) = problems_of(path)
    line = line_with(path, 'phone = 0120')
    assert problem.startswith(f"{path}:{line}: not TOML: ")
    assert f"(at line {line}, column" in problem


def test_a_missing_file_is_named() -> None:
    assert problems_of(Path("/nonexistent/shop.toml")) == (
        "/nonexistent/shop.toml: no such file (examples/shop.toml shows the shape of one)",)


def test_parse_takes_the_origin_and_the_directory_of_the_templates() -> None:
    shop = parse_shop_config(EXAMPLE.read_text(encoding="utf-8"), "inline.toml", EXAMPLE.parent)
    assert shop.path == Path("inline.toml") and "S06/upsell.line.j2" in shop.templates
    with pytest.raises(ShopConfigError) as raised:
        parse_shop_config('[shop]\nname = ""\n', "inline.toml", EXAMPLE.parent)
    # in the order of the lines: the keys missing from [shop] on its line, then the bad name
    assert raised.value.problems[0] == "inline.toml:1: shop.short_name: Field required"
    assert raised.value.problems[-1] == "inline.toml:2: shop.name: String should have at least 1 character"


def test_the_cart_import_takes_its_catalogue_from_a_shop_file() -> None:
    """What the import reads of a product is the same in the shop file and the catalogue file."""
    imported = {"name", "role", "days_supply", "sample", "ignore"}
    shop, alone = load_catalogue(EXAMPLE), load_catalogue(ROOT / "examples" / "catalogue.toml")
    assert shop.catalogue.keys() == alone.catalogue.keys()
    assert all(shop.catalogue[sku].model_dump(include=imported) == alone.catalogue[sku].model_dump(include=imported)
               for sku in shop.catalogue)


# --- the locator ---------------------------------------------------------------------------

LOCATOR_TEXT = '''\
# a comment with = and [brackets]
title = "x"  # trailing
[a."b c"]
d.e = 1
f = { g = 1, h = { i = [1, { j = 2 }] } }
'k.l' = """
m = 3
\\""" still the string
"""
n = [
  "A",  # one
  "B",
]
"q\\u00e9" = \'\'\'x\'\'\'
[[fruit]]
name = "apple"
[fruit.variety]
x = 1
[[fruit]]
name = "pear"
[[fruit.tree]]
planted = 1979-05-27 07:32:00Z
age = 3
'''


def test_the_locator_knows_headers_dotted_inline_quoted_and_array_keys() -> None:
    data = tomllib.loads(LOCATOR_TEXT)  # it is TOML, and the paths below are the data's
    lines = key_lines(LOCATOR_TEXT)
    assert data["a"]["b c"]["f"]["h"]["i"][1]["j"] == 2 and data["fruit"][1]["tree"][0]["age"] == 3
    assert lines[("title",)] == 2
    assert lines[("a", "b c")] == 3
    assert lines[("a", "b c", "d")] == lines[("a", "b c", "d", "e")] == 4
    assert lines[("a", "b c", "f", "h", "i", 1, "j")] == 5
    assert lines[("a", "b c", "k.l")] == 6
    assert ("m",) not in lines and ("a", "b c", "m") not in lines  # inside a multi-line string
    assert lines[("a", "b c", "n", 0)] == 11 and lines[("a", "b c", "n", 1)] == 12
    assert lines[("a", "b c", "qé")] == 14
    assert lines[("fruit", 0, "name")] == 16 and lines[("fruit", 0, "variety", "x")] == 18
    assert lines[("fruit", 1)] == 19 and lines[("fruit", 1, "name")] == 20
    assert lines[("fruit", 1, "tree", 0, "planted")] == 22 and lines[("fruit", 1, "tree", 0, "age")] == 23


def test_the_locator_falls_back_to_the_nearest_enclosing_key() -> None:
    lines = key_lines(LOCATOR_TEXT)
    assert line_of(lines, ("a", "b c", "missing")) == 3
    assert line_of(lines, ("a", "b c", "f", "h", "nope")) == 5
    assert line_of(lines, ("fruit", 1, "tree", 0, "x")) == 21
    assert line_of(lines, ("elsewhere",)) is None
    assert line_of(key_lines("[s.by_cycle]\n90 = 1\n"), ("s", "by_cycle", 90)) == 2  # an int key


def test_the_locator_keeps_what_it_found_in_text_it_cannot_read() -> None:
    assert key_lines('a = 1\nb = "unterminated\n') == {("a",): 1, ("b",): 2}


def test_a_dotted_path_is_split_by_the_keys_the_data_has() -> None:
    data = {"catalogue": {"KOSO.30": {"cross": ["A", "B"]}}}
    assert split_dotted("catalogue.KOSO.30.cross.1", data) == ("catalogue", "KOSO.30", "cross", 1)
    assert split_dotted("catalogue.NEW.cross", data) == ("catalogue", "NEW", "cross")
