"""Test settings: the product's settings, with the test run kept apart from a running dev stack."""

import os
import uuid

# Before the product settings read them: a Redis database and a queue of this test run only, so a
# dev worker on the same Redis never takes the tests' tasks (the test worker inherits both).
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("THROTTLE_REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ.setdefault("CELERY_TASK_DEFAULT_QUEUE", f"tests-{uuid.uuid4().hex[:12]}")

from marketplace.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The origin the test client's requests name (Django's test client sends Host: testserver).
PUBLIC_ORIGIN = "http://testserver"
