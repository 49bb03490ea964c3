"""The shop's catalogue as the cart import needs it: each SKU's line role and days of supply.

It is a TOML file with one table per SKU, in the shape the shop configuration
(SPEC §7) adopts for its own catalogue section, so the same table moves there:

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

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from starter.ingress.carts.tomlfile import parse_toml
from workflows.events import MAX_SUPPLY_DAYS, LineRole


class CatalogueError(ValueError):
    """A catalogue that cannot be used; the message names the SKU and the field."""


class Product(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(max_length=200)] = ""
    role: LineRole | None = None
    days_supply: Annotated[int, Field(gt=0, le=MAX_SUPPLY_DAYS)] | None = None
    sample: bool = False
    ignore: bool = False

    @model_validator(mode="after")
    def _complete(self) -> "Product":
        if self.ignore:
            return self
        if self.days_supply is None:
            raise ValueError("days_supply is required (or ignore = true)")
        if not self.sample and self.role is None:
            raise ValueError("role is required: main, cross or trial (or sample = true)")
        return self


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    catalogue: dict[Annotated[str, Field(min_length=1, max_length=128)], Product]

    def get(self, sku: str) -> Product | None:
        return self.catalogue.get(sku)


def parse_catalogue(text: str, origin: str = "catalogue") -> Catalogue:
    return parse_toml(Catalogue, text, origin, CatalogueError)


def load_catalogue(path: str | Path) -> Catalogue:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CatalogueError(f"no catalogue at {path}: pass --catalogue CATALOGUE.toml "
                             f"(examples/catalogue.toml shows its shape)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CatalogueError(f"{path}: cannot be read: {error}") from None
    return parse_catalogue(text, str(path))
