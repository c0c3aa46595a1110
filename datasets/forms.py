from django import forms

from datasets.models import DP_EPSILON_MAX, DP_EPSILON_MIN, LICENSES
from marketplace.money import eth_to_wei


class DatasetUploadForm(forms.Form):
    file = forms.FileField(
        help_text="CSV (UTF-8, with a header row) or Parquet.", allow_empty_file=True
    )
    title = forms.CharField(max_length=200)
    description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6}),
        required=False,
        max_length=20_000,
        help_text="Markdown: what the rows are, where they come from, how they were collected.",
    )
    license = forms.ChoiceField(choices=[("", "Choose a license…"), *LICENSES])
    price_eth = forms.CharField(
        label="Price (ETH)",
        max_length=100,
        error_messages={"required": "Enter a price in ETH, like 0.015."},
        help_text="What a buyer pays to train on this data in ETH, e.g. 0.015 (to 18 decimals).",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "placeholder": "0.015"}),
    )
    tags = forms.CharField(required=False, help_text="Comma-separated, e.g. medical, tabular")
    feature_opt_in = forms.CharField(
        required=False,
        max_length=5000,
        label="Columns models may use although they identify people or rows",
        help_text="Optional, comma-separated. Columns the listing flags as personal data or "
        "identifiers (and text columns of nearly all different values) are left out of every "
        "model unless you name them here.",
    )
    dp_epsilon_max = forms.FloatField(
        required=False,
        min_value=DP_EPSILON_MIN,
        max_value=DP_EPSILON_MAX,
        label="Require differential privacy (largest ε)",
        help_text="Optional: models trained on this data must be differentially private with at "
        f"most this ε ({DP_EPSILON_MIN} to {DP_EPSILON_MAX:g}; smaller is more private), e.g. 1.",
        widget=forms.NumberInput(attrs={"step": "any", "placeholder": "none"}),
    )
    parent = forms.TypedChoiceField(
        required=False,
        coerce=int,
        empty_value=None,
        label="New version of",
        help_text="Optional: one of your listed datasets that this one replaces.",
    )

    def __init__(self, *args, parents=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["parent"].choices = [("", "— none: a new dataset —")] + [
            (d.pk, f"#{d.pk} {d.title}") for d in parents
        ]

    def clean_price_eth(self) -> int:
        """The price as typed in ETH, converted exactly to wei."""
        try:
            return eth_to_wei(self.cleaned_data["price_eth"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc), code="bad_price") from None

    def clean(self) -> dict:
        cleaned = super().clean()
        # The listing services take wei: hand them the converted amount under its own name.
        if "price_eth" in cleaned:
            cleaned["price_wei"] = cleaned.pop("price_eth")
        return cleaned
