"""Model fields for money on-chain."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models

MAX_WEI = 2**256 - 1
_WIDTH = len(str(MAX_WEI))  # 78 digits


class WeiField(models.Field):
    """An amount of wei as a Python int, exact on every database.

    PostgreSQL stores numeric(78, 0). SQLite has no exact type that wide (its decimals read back
    as 15-digit floats), so there it is zero-padded text: exact, and it still orders and compares
    like the number. Sum amounts in Python, not with SQL aggregates.
    """

    description = "An amount in wei (0 to 2**256 - 1)"

    def db_type(self, connection) -> str:
        return "text" if connection.vendor == "sqlite" else f"numeric({_WIDTH}, 0)"

    def get_internal_type(self) -> str:
        return "WeiField"

    def from_db_value(self, value, expression, connection):
        return None if value is None else int(value)

    def to_python(self, value):
        if value is None or isinstance(value, int) and not isinstance(value, bool):
            result = value
        else:
            try:
                result = int(Decimal(str(value)))
                if Decimal(str(value)) != result:
                    raise ValueError
            except (ValueError, ArithmeticError):
                raise ValidationError(f"{value!r} is not a whole number of wei.") from None
        if result is not None and not 0 <= result <= MAX_WEI:
            raise ValidationError(f"{value!r} is outside 0 to 2**256 - 1 wei.")
        return result

    def get_prep_value(self, value):
        return self.to_python(super().get_prep_value(value))

    def get_db_prep_value(self, value, connection, prepared=False):
        if not prepared:
            value = self.get_prep_value(value)
        if value is None:
            return None
        return f"{value:0{_WIDTH}d}" if connection.vendor == "sqlite" else Decimal(value)


def rewrite_wei_column(app_label: str, model_name: str, field_name: str):
    """A migration step that rewrites a column turned into a WeiField, so that values written
    before (unpadded on SQLite) compare and order like numbers."""

    def forwards(apps, schema_editor):
        if schema_editor.connection.vendor != "sqlite":
            return
        model = apps.get_model(app_label, model_name)
        for pk, value in model.objects.values_list("pk", field_name):
            if value is not None:
                model.objects.filter(pk=pk).update(**{field_name: int(value)})

    return forwards
