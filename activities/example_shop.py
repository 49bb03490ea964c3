"""EXAMPLE ONLY: the fictitious shop whose messages goldenroute sends before a shop applies its own.

ゴールデンルート健康館 does not exist: its sender, address, phone and ``grk.example``
URLs are placeholders. It is what ``render`` uses when no configuration has been
applied (version 0, no ``ShopConfig`` at hand) and what the tests render with, so
that every built-in template has a complete shop to fill in. A real shop replaces
all of it with its own configuration file (SPEC §7).

Its catalogue is small but complete enough for every scenario to name a product:
the SKUs the examples and tests send (samples, a trial, two main products), a
cross product for each main product (S09, S10) and a similar one (S11).
"""

from __future__ import annotations

from workflows.events import LineRole
from workflows.shop import Product, Sender, ShopConfig, ShopProfile, Urls

_SITE = "https://grk.example"  # short on purpose: the SMS copy carries a URL within 70 characters

EXAMPLE_SHOP = ShopConfig(
    shop=ShopProfile(
        name="ゴールデンルート健康館",
        short_name="GR健康館",
        operator="株式会社ゴールデンルート",
        phone="0120-000-000",
        hours="平日9:00〜17:00",
        timezone="Asia/Tokyo",
        sender=Sender(
            name="ゴールデンルート健康館（株式会社ゴールデンルート）",
            email="info@grk.example",
            reply_to="support@grk.example",
            address="〒150-0000 東京都渋谷区神南0-0-0",
            contact="support@grk.example / フリーダイヤル 0120-000-000（平日9:00〜17:00）",
        ),
        urls=Urls(
            mypage=f"{_SITE}/my", resume=f"{_SITE}/my/teiki", unsubscribe=f"{_SITE}/stop",
            purchase=f"{_SITE}/buy", subscription=f"{_SITE}/teiki", faq=f"{_SITE}/faq", survey=f"{_SITE}/q",
            pages={
                "guide": f"{_SITE}/guide", "voice": f"{_SITE}/voice", "monitor": f"{_SITE}/monitor",
                "gift": f"{_SITE}/gift", "secret": f"{_SITE}/secret", "cross": f"{_SITE}/set",
                "new": f"{_SITE}/new",
            },
        ),
        offers={
            "first_purchase": "初回限定20%OFF・送料無料",
            "bulk": "3袋まとめ買いで15%OFF",
            "extra_bag": "もう1袋プレゼント",
            "subscription": "毎回10%OFF・送料無料・ポイント2倍",
            "comeback": "再購入15%OFFクーポン",
            "cross_first": "はじめての併用で20%OFF",
            "secret_sale": "ご愛用者様限定シークレットセール",
        },
        offer_days=7,
    ),
    catalogue={
        "KOSO-30": Product(name="ゴールデン酵素 30日分", role=LineRole.MAIN, days_supply=30,
                           url=f"{_SITE}/koso", cross=("NYUSAN-30", "COLLAGEN-30"), similar=("AOJIRU-30",)),
        "AOJIRU-30": Product(name="国産大麦若葉の青汁 30包", role=LineRole.MAIN, days_supply=30,
                             url=f"{_SITE}/aojiru", cross=("COLLAGEN-30",), similar=("KOSO-30",)),
        "NYUSAN-30": Product(name="乳酸菌サプリ 30日分", role=LineRole.CROSS, days_supply=30,
                             url=f"{_SITE}/nyusan"),
        "COLLAGEN-30": Product(name="コラーゲンゼリー 30本", role=LineRole.CROSS, days_supply=30,
                               url=f"{_SITE}/collagen"),
        "KOSO-SAMPLE": Product(name="ゴールデン酵素 お試しサンプル", sample=True, days_supply=7, leads_to="KOSO-30"),
        "KOSO-SAMPLE-7": Product(name="ゴールデン酵素 7日分サンプル", sample=True, days_supply=7, leads_to="KOSO-30"),
        "KOSO-SAMPLE-14": Product(name="ゴールデン酵素 14日分サンプル", sample=True, days_supply=14,
                                  leads_to="KOSO-30"),
        "KOSO-7": Product(name="ゴールデン酵素 7日分サンプル", sample=True, days_supply=7, leads_to="KOSO-30"),
        "KOSO-TRIAL-10": Product(name="ゴールデン酵素 10日分 初回お試し", role=LineRole.TRIAL, days_supply=10,
                                 leads_to="KOSO-30"),
    },
)
