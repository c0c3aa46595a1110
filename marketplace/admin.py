from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from marketplace.models import DidEvent, User


@admin.register(User)
class MarketplaceUserAdmin(UserAdmin):
    list_display = ("username", "address", "display_name", "date_joined", "is_staff")
    fieldsets = (*UserAdmin.fieldsets, ("Wallet", {"fields": ("address", "display_name")}))


@admin.register(DidEvent)
class DidEventAdmin(admin.ModelAdmin):
    list_display = ("identity", "kind", "block_number", "tx_hash", "log_index")
    search_fields = ("identity", "tx_hash")
