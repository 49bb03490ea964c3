"""EC-CUBE 4's 受注CSV (受注管理 > CSVダウンロード), as ``dtb_csv`` (csv_type 3) defines its columns.

One row per 受注明細 (order item) × 出荷; the order's columns repeat on every row.
Columns used: 注文番号 (order_no: the order id the shop and the customer see),
会員ID (empty for a guest), メールアドレス, 受注日, 対応状況(ID)/(名称), 商品コード, 価格,
個数, 明細区分(ID)/(名称), 発送日. The shop can switch columns off in
設定 > 店舗設定 > CSV出力項目設定; the ones above that are needed must stay on.

- 明細区分: only 商品 rows are lines; 送料, 手数料, 割引, 税, ポイント rows are left out.
- 対応状況: 発送済み (5) → shipped; 注文取消し (3) and 返品 (9) → cancelled;
  購入処理中 (8) and 決済処理中 (7) are not orders yet (the admin's order list hides
  them too) and are skipped. 新規受付, 入金済み, 対応中 → the order as it is.
- Guests (no 会員ID) get a member id made from their e-mail address, ``ec-cube-guest:``
  and a hash (``values.email_member_id``), not the address: a guest's repeat purchases
  still count, and package inserts (同梱) reach them without consent. The same person
  registering later gets their 会員ID, a different member.
- Dates are written ``Y-m-d H:i:s`` in the shop's timezone (``eccube_csv_export_date_format``);
  Excel re-saves them as ``2024/05/01 10:00``: both are read.
"""

from __future__ import annotations

from starter.ingress.carts.cartmap import CartMap, Columns, LineRule, MemberRule, StatusRule

EC_CUBE = CartMap(
    source="ec-cube",
    columns=Columns(
        order_id=["注文番号", "注文ID"],
        ordered_at=["受注日", "注文日"],
        sku="商品コード",
        quantity="個数",
        unit_price=["価格", "単価"],
        shipped_at="発送日",
    ),
    member=MemberRule(column="会員ID", email="メールアドレス", guests="email", email_prefix="ec-cube-guest:"),
    status=[StatusRule(
        column=["対応状況(名称)", "対応状況(ID)", "対応状況"],
        shipped=["発送済み", "5"],
        cancelled=["注文取消し", "返品", "3", "9"],
        skipped=["購入処理中", "決済処理中", "8", "7"],
    )],
    lines=LineRule(column=["明細区分(名称)", "明細区分(ID)", "明細区分"], products=["商品", "1"]),
    missing_optional="ignore",
)
