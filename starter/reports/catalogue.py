"""Product names for the product analyses: the shop's catalogue, in SQL.

The display name of a SKU is the one the latest applied configuration version gives it
(``config_versions.body``, the validated ShopConfig as JSON: the same version whose
``shop.timezone`` the reports read, ``period.read_shop``); a SKU the catalogue does not
name — or any SKU before a shop applies its configuration — is shown as itself. The
built-in example shop's names are placeholders, so they are never shown for a real
shop's SKUs.
"""

from __future__ import annotations

# A CTE body: (sku, name) of every product the latest version names.
CATALOGUE_CTE = """catalogue AS (  -- the latest applied configuration's display names
    SELECT p.key AS sku, nullif(p.value->>'name', '') AS name
    FROM config_versions v, jsonb_each(v.body->'catalogue') AS p
    WHERE v.version = (SELECT max(version) FROM config_versions)
)"""


def named(sku: str, alias: str = "c") -> str:
    """The SQL of a SKU's display name from a ``LEFT JOIN catalogue <alias>``: the name, else the SKU."""
    return f"coalesce({alias}.name, {sku})"
