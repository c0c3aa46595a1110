from django.contrib import admin

from datasets.models import Dataset


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "owner", "status", "stage", "rows", "price_wei", "created")
    list_filter = ("status", "license")
    search_fields = ("title", "owner__address", "cid")
    raw_id_fields = ("owner", "parent")
    # The pipeline and the chain own these; an operator reads them.
    readonly_fields = (
        "status", "stage", "progress", "status_message", "rows", "column_count", "columns",
        "quality_warnings", "file_sha256", "rows_sha256", "cid", "content_sha256",
        "metadata_cid", "metadata_sha256", "listing_id", "tx_hash", "block_number",
        "confirmed_block", "signature", "sign_deadline", "created", "updated", "listed_at",
    )  # fmt: skip
    exclude = ("wrapped_data_key", "minhash", "search_text", "tag_index", "upload_cid")
