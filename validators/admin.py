from django.contrib import admin

from validators.models import AttestationRequest, Validator


@admin.register(Validator)
class ValidatorAdmin(admin.ModelAdmin):
    list_display = ("address", "status", "stake_wei", "slashed_wei", "updated")
    readonly_fields = [f.name for f in Validator._meta.fields]


@admin.register(AttestationRequest)
class AttestationRequestAdmin(admin.ModelAdmin):
    list_display = ("round", "validator", "status", "report_hash", "answered_at")
    list_filter = ("status",)
    readonly_fields = [f.name for f in AttestationRequest._meta.fields]
