"""Full-text search for browsing on PostgreSQL: a stored tsvector of `search_text` (the 'simple'
configuration: lower-cased words, no stemming, no stop words) kept by the database itself, and a
GIN index over it for listed datasets. A search is answered from the index without re-reading the
text of every candidate (the trigram index it replaces had to recheck each one), and a page in an
indexed order can test a row's words without parsing its text again.

The column is not a model field: only the browse selector reads it (datasets.selectors), and the
database computes it on every insert and update. A later migration that alters `search_text` must
drop it first and add it back. SQLite has neither; it keeps substring search on `search_text`."""

from django.db import migrations

ADD = [
    "ALTER TABLE datasets_dataset ADD COLUMN search_vector tsvector "
    "GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, search_text)) STORED",
    # Enough most-common words for the planner to estimate a prefix search (it needs 100 of
    # them; without, it guesses 2% of the table): the estimate picks the plan (walk an index in
    # the page's order for a common word, read the GIN index for a rare one) and is the count
    # shown for a broad search.
    "ALTER TABLE datasets_dataset ALTER COLUMN search_vector SET STATISTICS 1000",
    "CREATE INDEX dataset_search_fts ON datasets_dataset USING gin (search_vector) "
    "WHERE status = 'listed'",
    "DROP INDEX IF EXISTS dataset_search_trgm",
]
DROP = [
    "CREATE INDEX IF NOT EXISTS dataset_search_trgm ON datasets_dataset "
    "USING gin (search_text gin_trgm_ops) WHERE status = 'listed'",
    "DROP INDEX IF EXISTS dataset_search_fts",
    "ALTER TABLE datasets_dataset DROP COLUMN IF EXISTS search_vector",
]


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in ADD:
            schema_editor.execute(statement)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in DROP:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("datasets", "0011_row_signatures_copycats")]

    operations = [migrations.RunPython(forward, backward)]
