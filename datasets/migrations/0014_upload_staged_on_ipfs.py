from django.db import migrations, models

UPLOAD_AGAIN = (
    "The marketplace was upgraded while this upload waited for processing: upload it again."
)


def fail_waiting_uploads(apps, schema_editor):
    """An upload still waiting in the old shared folder has no staged copy to process."""
    Dataset = apps.get_model("datasets", "Dataset")
    Dataset.objects.filter(status="processing").exclude(upload_path="").update(
        status="failed", stage="done", status_message=UPLOAD_AGAIN
    )


class Migration(migrations.Migration):
    """Uploads wait for a worker on the IPFS node (by CID), not in a folder the web process and
    the workers must share."""

    dependencies = [("datasets", "0013_browse_license_indexes")]

    operations = [
        migrations.RunPython(fail_waiting_uploads, migrations.RunPython.noop),
        migrations.RemoveField(model_name="dataset", name="upload_path"),
        migrations.AddField(
            model_name="dataset",
            name="upload_cid",
            field=models.CharField(blank=True, max_length=100),
        ),
    ]
