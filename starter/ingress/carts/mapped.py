"""Any other cart (ecforce, サブスクストア, リピスト, futureshop, 侍カート …): a TOML column map.

The map names the export's columns and what its status values mean; it is the
same ``CartMap`` the built-in formats use. ``examples/carts/subscstore.toml`` is a
complete one with 定期 columns. Every column the map names must be in the export
(a misspelt header is an error at once, not silently empty) unless the map says
``missing_optional = "ignore"``.

    source = "subsc"                      # the event ids' prefix: subsc:{受注番号}:placed
    [columns]
    order_id = "受注番号"
    ordered_at = "受注日時"
    sku = "商品コード"
    quantity = "数量"
    unit_price = "販売単価"               # optional, like shipped_at and cancelled_at
    shipped_at = "発送日"
    [member]
    column = "顧客番号"
    guests = "reject"                     # or "email" with email = "メールアドレス"
    [status]                              # or several [[status]] tables
    column = "受注ステータス"
    shipped = ["発送済"]
    cancelled = ["キャンセル", "返品"]
    skipped = ["仮受注"]
    [subscription]
    id = "定期受注番号"
    status = "継続ステータス"
    paused = ["休止中"]
    cancelled = ["解約"]
    interval = "お届け周期"
"""

from __future__ import annotations

from pathlib import Path

from starter.ingress.carts.cartmap import CartMap, MapError
from starter.ingress.carts.tomlfile import parse_toml


def parse_map(text: str, origin: str = "map") -> CartMap:
    return parse_toml(CartMap, text, origin, MapError, root="(map)")


def load_map(path: str | Path) -> CartMap:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise MapError(f"{path}: cannot be read: {error}") from None
    return parse_map(text, str(path))
