from django.contrib.auth.models import AbstractUser
from django.db import models

from chain.models import EventRecord


class User(AbstractUser):
    """A marketplace user. Wallet users sign in with Ethereum; their username is their address."""

    address = models.CharField(max_length=42, unique=True, null=True, blank=True)
    display_name = models.CharField(max_length=80, blank=True)

    def __str__(self) -> str:
        return self.address or self.username


class LoginNonce(models.Model):
    """A single-use nonce for a Sign-In with Ethereum message."""

    value = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.value} ({'used' if self.used_at else 'unused'})"


class DidEvent(EventRecord):
    """An ERC-1056 registry event of one identity; the DID document is built from these."""

    class Kind(models.TextChoices):
        OWNER = "DIDOwnerChanged"
        DELEGATE = "DIDDelegateChanged"
        ATTRIBUTE = "DIDAttributeChanged"

    identity = models.CharField(max_length=42, db_index=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    args = models.JSONField()

    class Meta(EventRecord.Meta):
        ordering = ["block_number", "log_index"]

    def __str__(self) -> str:
        return f"{self.kind} of {self.identity} at block {self.block_number}"
