"""Trigram indexes for browsing on PostgreSQL: the search words and the tag filter are substring
matches (LIKE '%word%'), which a GIN trigram index answers without reading every listing.
pg_trgm is a trusted extension (PostgreSQL 13+): a database owner may create it. SQLite scans."""

from django.db import migrations

INDEXES = {
    "dataset_search_trgm": "search_text",
    "dataset_tags_trgm": "tag_index",
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, column in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON datasets_dataset "
            f"USING gin ({column} gin_trgm_ops) WHERE status = 'listed'"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("datasets", "0004_alter_dataset_price_wei")]

    operations = [migrations.RunPython(create, drop)]
