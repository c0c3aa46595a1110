from django import forms

from datasets.models import LICENSES


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
    price_wei = forms.CharField(
        label="Price (wei)",
        max_length=100,
        help_text="What a buyer pays to train on this data, in wei (10^18 wei = 1 ETH).",
        widget=forms.TextInput(attrs={"inputmode": "numeric", "pattern": "[0-9]+"}),
    )
    tags = forms.CharField(required=False, help_text="Comma-separated, e.g. medical, tabular")
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
