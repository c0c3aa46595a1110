from django.contrib import admin

from chain.models import SkippedEvent


@admin.register(SkippedEvent)
class SkippedEventAdmin(admin.ModelAdmin):
    """Logs the indexer could not take, with why: for an operator to look into."""

    list_display = ["block_number", "tx_hash", "log_index", "contract", "event", "reason"]
    list_filter = ["contract", "event"]
    search_fields = ["tx_hash", "reason"]
    readonly_fields = [f.name for f in SkippedEvent._meta.fields]
