"""The shop's catalogue as the cart import needs it: each SKU's line role and days of supply.

The catalogue's home is the shop configuration file (SPEC §7, ``examples/shop.toml``,
loaded by ``worker.shop_config``): ``load_catalogue`` given a file with a ``[shop]``
table takes that file's catalogue, checked as the whole file is (its other fields
— display names, URLs, cross and similar products — are for the messages, not the
import). A file of the catalogue alone (``examples/catalogue.toml``) still works:
one table per SKU, in the same shape:

    [catalogue."KOSO-30"]
    name = "酵素サプリ 30日分"
    role = "main"          # main | cross | trial
    days_supply = 30

    [catalogue."KOSO-7-SAMPLE"]
    name = "酵素サプリ 7日分 無料サンプル"
    sample = true          # a sample-only order becomes sample_requested
    days_supply = 7

    [catalogue."NOVELTY-POUCH"]
    name = "オリジナルポーチ (ノベルティ)"
    ignore = true          # not a product for the lifecycle: its lines are left out
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from starter.ingress.carts.tomlfile import parse_toml
from worker.shop_config import ShopConfigError, load_shop_config
from workflows.shop import Product  # one product model: a catalogue file may carry the shop's fields too


class CatalogueError(ValueError):
    """A catalogue that cannot be used; the message names the SKU and the field."""


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    catalogue: dict[Annotated[str, Field(min_length=1, max_length=128)], Product]

    def get(self, sku: str) -> Product | None:
        return self.catalogue.get(sku)


def parse_catalogue(text: str, origin: str = "catalogue") -> Catalogue:
    return parse_toml(Catalogue, text, origin, CatalogueError)


def load_catalogue(path: str | Path) -> Catalogue:
    """The catalogue of a shop configuration file, or of a file of the catalogue alone."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CatalogueError(f"no catalogue at {path}: pass --catalogue SHOP.toml "
                             f"(examples/shop.toml shows its shape)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CatalogueError(f"{path}: cannot be read: {error}") from None
    if _is_shop_file(text):
        return _from_shop_file(path)
    return parse_catalogue(text, str(path))


def _is_shop_file(text: str) -> bool:
    try:
        return "shop" in tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False  # parse_catalogue says where


def _from_shop_file(path: Path) -> Catalogue:
    try:
        shop = load_shop_config(path)
    except ShopConfigError as error:
        raise CatalogueError("; ".join(error.problems)) from None
    return Catalogue(catalogue=dict(shop.config.catalogue))
