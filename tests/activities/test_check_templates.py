"""check_templates: every message a configuration can send is rendered before it is applied,
and each one that would fail is named by its template, step, channel and variant."""

from __future__ import annotations

from activities.example_shop import EXAMPLE_SHOP
from activities.render import check_templates
from workflows.shop import ShopConfig


def shop_with(**changes) -> ShopConfig:
    return ShopConfig.model_validate({**EXAMPLE_SHOP.model_dump(), **changes})


def test_the_example_shop_and_the_built_in_templates_have_no_problem():
    assert check_templates(EXAMPLE_SHOP, {}) == []


def test_a_broken_override_is_named_with_every_step_channel_and_variant_it_breaks():
    broken = {"S06/upsell.line.j2": "{% extends layout %}\n{% block short %}定期{% endblock %}\n"
                                    "{% block link %}{{ urls.teiki }}{% endblock %}"}
    assert check_templates(EXAMPLE_SHOP, broken) == [
        "S06/upsell.line.j2 (S06.upsell on line): UndefinedError: 'urls' has no attribute 'teiki' (line 3)"]


def test_a_syntax_error_names_the_template_and_its_line():
    broken = {"S03/survey.sms.j2": "{% extends layout %}\n{% block short %}{{ x }{% endblock %}"}
    problems = check_templates(EXAMPLE_SHOP, broken)
    assert problems == ["S03/survey.sms.j2 (S03.survey on sms): TemplateSyntaxError: unexpected '}' (line 2)"]


def test_a_broken_part_is_reported_where_it_is_used_and_located_in_the_part():
    problems = check_templates(EXAMPLE_SHOP, {"_parts/upsell.j2": "{{ offers.teiki }}"})
    assert ("S06/upsell.j2 (S06.upsell on email, built-in template): UndefinedError: 'offers' has no attribute "
            "'teiki' (at _parts/upsell.j2 line 1)") in problems
    assert all(p.endswith("(at _parts/upsell.j2 line 1)") for p in problems)
    assert not [p for p in problems if "on sms" in p]  # an SMS has no room for the upsell block


def test_a_step_the_shop_switched_off_is_not_checked():
    broken = {"S06/upsell.line.j2": "{{ urls.teiki }}"}
    assert check_templates(shop_with(scenarios={"S06": {"enabled": False}}), broken) == []
    assert check_templates(shop_with(scenarios={"S06": {"steps": {"upsell": {"enabled": False}}}}), broken) == []


def test_what_the_configuration_lacks_is_named_for_the_built_in_templates_that_need_it():
    shop = EXAMPLE_SHOP.shop
    offers = {k: v for k, v in shop.offers.items() if k != "comeback"}
    problems = check_templates(shop_with(shop=shop.model_copy(update={"offers": offers})), {})
    assert problems[0] == ("S11/comeback_offer.j2 (S11.comeback_offer on line, built-in template): "
                           "UndefinedError: 'offers' has no attribute 'comeback' (line 3)")
    assert {p.split(" (")[0] for p in problems} == {"S11/comeback_offer.j2"}


def test_a_variant_without_its_own_copy_is_reported_not_sent_with_another_ones_offer():
    problems = check_templates(shop_with(scenarios={"S08": {"variants": {"gift": 1, "points": 1}}}), {})
    assert problems[0] == ("no template (S08.loyalty_offer on line, variant points): none of "
                           "['S08/loyalty_offer.points.line.j2', 'S08/loyalty_offer.points.j2', "
                           "'S08/loyalty_offer.line.j2', 'S08/loyalty_offer.j2'] exists")
    assert all("variant points" in p for p in problems)


def test_a_template_without_a_block_its_layout_prints_says_which():
    problems = check_templates(EXAMPLE_SHOP, {"S12/follow_up_faq.dm.j2": "{% extends layout %}"})
    assert problems == ["S12/follow_up_faq.dm.j2 (S12.follow_up_faq on dm): UndefinedError: "
                        "the template has no block 'subject' (at _layouts/dm.j2 line 9)"]


def test_a_template_no_step_looks_up_is_reported():
    own = {"S06/upsel.j2": "typo", "S08/loyalty_offer.points.j2": "no such variant",
           "S06/upsell.sms.j2": "{% extends layout %}{% block short %}定期{% endblock %}"
                                "{% block link %}{{ urls.subscription }}{% endblock %}"}
    problems = check_templates(EXAMPLE_SHOP, own)
    assert [p.split(":")[0] for p in problems] == ["S06/upsel.j2", "S08/loyalty_offer.points.j2"]


def test_an_sms_longer_than_one_message_is_reported():
    own = {"S04/reminder.sms.j2": "{% extends layout %}{% block short %}" + "お" * 60 + "{% endblock %}"
                                  "{% block link %}{{ urls.purchase }}{% endblock %}"}
    problems = check_templates(EXAMPLE_SHOP, own)
    assert len(problems) == 1 and problems[0].startswith(
        "S04/reminder.sms.j2 (S04.reminder on sms): the SMS is 91 characters, more than 70")


def test_every_main_product_is_tried():
    # One main product without a cross product: its S09 message links the shop's cross page.
    catalogue = {**EXAMPLE_SHOP.catalogue, "AOJIRU-30": EXAMPLE_SHOP.catalogue["AOJIRU-30"].model_copy(
        update={"cross": ()})}
    own = {"S09/cross_offer.j2": "{% extends layout %}{% block subject %}併用{% endblock %}{% block short %}併用"
                                 "{% endblock %}{% block link %}{{ cross_product.url }}{% endblock %}"}
    assert check_templates(EXAMPLE_SHOP, own) == []
    problems = check_templates(shop_with(catalogue=catalogue), own)
    assert problems == [f"S09/cross_offer.j2 (S09.cross_offer on {channel}): UndefinedError: 'None' has no attribute "
                        "'url' (line 1)" for channel in ("line", "email", "sms", "dm")]
