"""check_templates renders every configured [broadcasts.NAME] on its channel (or every routed one)
before a configuration is applied, and names the broadcast's key in each problem; `goldenroute
config check` prints them and refuses the file."""

from __future__ import annotations

import shutil
from pathlib import Path

from activities.example_shop import EXAMPLE_SHOP
from activities.render import check_templates
from starter.cli import main
from worker.shop_config import load_shop_config
from workflows.shop import ShopConfig

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EMAIL_ONLY = "{% extends layout %}{% block subject %}春のセール{% endblock %}{% block lead %}春のセールです。{% endblock %}" \
             "{% block body %}本文{% endblock %}{% block link %}{{ urls.purchase }}{% endblock %}"


def shop_with(**broadcasts) -> ShopConfig:
    return ShopConfig.model_validate({**EXAMPLE_SHOP.model_dump(), "broadcasts": broadcasts})


def spring(**fields) -> dict:
    return {"description": "春のセール", "segment": "dormant_soon", **fields}


def test_the_example_shop_file_and_its_broadcasts_have_no_problem():
    loaded = load_shop_config(EXAMPLES / "shop.toml")
    assert set(loaded.config.broadcasts) == {"weekly_news", "monthly_dm", "nyusan_trial"}
    assert check_templates(loaded.config, loaded.templates) == []


def test_a_broadcast_without_its_template_is_named_by_its_key():
    assert check_templates(shop_with(spring_sale=spring(channel="email")), {}) == [
        "broadcasts.spring_sale.template: no template (BC.spring_sale on email): none of "
        "['BC/spring_sale.email.j2', 'BC/spring_sale.j2'] exists"]


def test_a_routed_broadcast_is_rendered_on_every_channel_routing_may_pick():
    problems = check_templates(shop_with(spring_sale=spring()), {"BC/spring_sale.email.j2": EMAIL_ONLY})
    assert [p.split(" (")[1].split(")")[0] for p in problems] == [
        "BC.spring_sale on line", "BC.spring_sale on sms", "BC.spring_sale on dm"]
    assert all(p.startswith("broadcasts.spring_sale.template: no template") for p in problems)


def test_a_broken_broadcast_template_is_named_with_its_line():
    own = {"BC/autumn.j2": "{% extends layout %}\n{% block subject %}秋{% endblock %}\n"
                           "{% block link %}{{ urls.teiki }}{% endblock %}"}
    assert check_templates(shop_with(spring_sale=spring(channel="email", template="autumn")), own) == [
        "broadcasts.spring_sale.template: BC/autumn.j2 (BC.spring_sale on email): UndefinedError: "
        "'urls' has no attribute 'teiki' (line 3)"]


def test_a_broadcast_email_without_the_sender_block_is_a_problem():
    own = {"BC/spring_sale.j2": "{% block subject %}春{% endblock %}本文だけ"}
    (problem,) = check_templates(shop_with(spring_sale=spring(channel="email")), own)
    assert problem.startswith("broadcasts.spring_sale.template: BC/spring_sale.j2 (BC.spring_sale on email): "
                              "the email does not show sender.name, sender.address, sender.contact, urls.unsubscribe")


def test_a_broadcast_sms_longer_than_one_message_is_a_problem():
    own = {"BC/spring_sale.j2": "{% extends layout %}{% block short %}" + "春" * 60 + "{% endblock %}"
                                "{% block link %}{{ urls.purchase }}{% endblock %}"}
    (problem,) = check_templates(shop_with(spring_sale=spring(channel="sms")), own)
    assert problem.startswith("broadcasts.spring_sale.template: BC/spring_sale.j2 (BC.spring_sale on sms): "
                              "the SMS is 91 characters, more than 70")  # 【GR健康館】 7 + 60 + 1 + the URL 23


def test_a_push_broadcast_renders_through_the_push_layout():
    own = {"BC/spring_sale.j2": "{% extends layout %}{% block short %}春のセール開催中{% endblock %}"
                                "{% block link %}{{ urls.purchase }}{% endblock %}"}
    assert check_templates(shop_with(spring_sale=spring(channel="push")), own) == []


def test_a_broadcast_template_no_broadcast_looks_up_is_reported():
    own = {"BC/spring_sale.j2": EMAIL_ONLY, "BC/spring_sale.line.j2": EMAIL_ONLY, "BC/sprnig_sale.j2": EMAIL_ONLY}
    problems = check_templates(shop_with(spring_sale=spring(channel="email")), own)
    assert [p.split(":")[0] for p in problems] == ["BC/spring_sale.line.j2", "BC/sprnig_sale.j2"]
    assert all("no broadcast looks this template up" in p for p in problems)


def test_config_check_prints_a_broken_broadcast_and_refuses_the_file(tmp_path, capsys):
    shutil.copy(EXAMPLES / "shop.toml", tmp_path / "shop.toml")
    shutil.copytree(EXAMPLES / "shop-templates", tmp_path / "shop-templates")
    weekly = tmp_path / "shop-templates" / "BC" / "weekly_news.j2"
    weekly.write_text(weekly.read_text(encoding="utf-8").replace("{{ urls.guide }}", "{{ urls.recipes }}"),
                      encoding="utf-8")
    assert main(["config", "check", str(tmp_path / "shop.toml")]) == 1
    out = capsys.readouterr().out
    line = next(n for n, text in enumerate(weekly.read_text(encoding="utf-8").splitlines(), 1) if "recipes" in text)
    assert out.splitlines() == [
        f"broadcasts.weekly_news.template: BC/weekly_news.j2 (BC.weekly_news on email): UndefinedError: "
        f"'urls' has no attribute 'recipes' (line {line})"]


def test_config_check_of_the_example_file_passes(capsys):
    assert main(["config", "check", str(EXAMPLES / "shop.toml")]) == 0
    assert "OK — ゴールデンルート健康館" in capsys.readouterr().out
