"""Start-up with missing or malformed settings stops with one line naming the setting."""

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(60),
    "DJANGO_ALLOWED_HOSTS": "marketplace.example.org",
    "MARKETPLACE_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
    "OPERATOR_PRIVATE_KEY": "0x" + secrets.token_hex(32),
    "ADMIN_PRIVATE_KEY": "0x" + secrets.token_hex(32),
    "CHAIN_ID": "11155111",
}
SAME_KEY = "0x" + secrets.token_hex(32)
SAME_KEY_LINE = (
    "OPERATOR_PRIVATE_KEY and ADMIN_PRIVATE_KEY are the same key: the operator and the admin "
    "must be different keys"
)


def run(args: list[str], env: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    ignored = {
        *PRODUCTION_ENV,
        "DATABASE_URL",
        "DJANGO_SETTINGS_MODULE",
        "DJANGO_ALLOW_ASYNC_UNSAFE",
    }
    clean = {k: v for k, v in os.environ.items() if k not in ignored}
    return subprocess.run(
        args,
        cwd=ROOT,
        env={**clean, "MARKETPLACE_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CHAIN_ID": "abc"}, "CHAIN_ID='abc' is malformed: expected an integer"),
        ({"CHAIN_RPC_URL": "localhost:8545"}, "CHAIN_RPC_URL='localhost:8545' is malformed"),
        ({"CELERY_BROKER_URL": "amqp://x"}, "CELERY_BROKER_URL='amqp://x' is malformed"),
        ({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG='maybe' is malformed"),
        ({"OPERATOR_PRIVATE_KEY": "0x1234"}, "OPERATOR_PRIVATE_KEY is malformed"),
        ({"ADMIN_PRIVATE_KEY": "0xzz"}, "ADMIN_PRIVATE_KEY is malformed"),
        (
            {**PRODUCTION_ENV, "OPERATOR_PRIVATE_KEY": SAME_KEY, "ADMIN_PRIVATE_KEY": SAME_KEY},
            SAME_KEY_LINE,
        ),
        (
            {"CHAIN_ID": "1", "OPERATOR_PRIVATE_KEY": SAME_KEY, "ADMIN_PRIVATE_KEY": SAME_KEY},
            SAME_KEY_LINE,
        ),
        ({"ESCROW_FEE_BPS": "2001"}, "ESCROW_FEE_BPS='2001' is out of range"),
        (
            {"DATASET_COPY_MATCH_FRACTION": "half"},
            "DATASET_COPY_MATCH_FRACTION='half' is malformed: expected a number",
        ),
        ({"DATASET_COPY_MATCH_FRACTION": "1.5"}, "DATASET_COPY_MATCH_FRACTION='1.5' is out of"),
        ({"ESCROW_REFUND_DELAY_SECONDS": "2592001"}, "ESCROW_REFUND_DELAY_SECONDS='2592001' is"),
        ({"MARKETPLACE_MASTER_KEY": "c2hvcnQ="}, "MARKETPLACE_MASTER_KEY is malformed"),
        ({**PRODUCTION_ENV, "DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY is not set"),
        ({**PRODUCTION_ENV, "MARKETPLACE_MASTER_KEY": ""}, "MARKETPLACE_MASTER_KEY is not set"),
        ({**PRODUCTION_ENV, "DJANGO_ALLOWED_HOSTS": ""}, "DJANGO_ALLOWED_HOSTS is not set"),
    ],
)
def test_bad_setting_stops_manage_py_with_one_line(env, expected, tmp_path):
    result = run([sys.executable, "manage.py", "check"], env, tmp_path)

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_bad_setting_stops_the_celery_worker_with_one_line(tmp_path):
    result = run(
        [sys.executable, "-m", "celery", "-A", "marketplace", "worker"], {"CHAIN_ID": "x"}, tmp_path
    )

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Configuration error: CHAIN_ID='x' is malformed: expected an integer"
    ]


def test_production_settings_pass_the_deploy_check(tmp_path):
    result = run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        PRODUCTION_ENV,
        tmp_path,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_dev_master_key_is_generated_once_into_a_private_file(tmp_path):
    script = "from django.conf import settings; print(settings.MASTER_KEY.hex())"
    env = {"DJANGO_SETTINGS_MODULE": "marketplace.settings"}

    first = run([sys.executable, "-c", f"import django; django.setup(); {script}"], env, tmp_path)
    second = run([sys.executable, "-c", f"import django; django.setup(); {script}"], env, tmp_path)

    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "master.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert len(bytes.fromhex(first.stdout.strip())) == 32
    assert first.stdout == second.stdout


def test_the_same_key_for_both_roles_stops_the_worker_with_one_line(tmp_path):
    env = {**PRODUCTION_ENV, "OPERATOR_PRIVATE_KEY": SAME_KEY, "ADMIN_PRIVATE_KEY": SAME_KEY}

    result = run([sys.executable, "-m", "celery", "-A", "marketplace", "worker"], env, tmp_path)

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"Configuration error: {SAME_KEY_LINE}"]


def test_the_dev_chain_may_use_one_key_for_both(tmp_path):
    env = {"OPERATOR_PRIVATE_KEY": SAME_KEY, "ADMIN_PRIVATE_KEY": SAME_KEY}

    result = run([sys.executable, "manage.py", "check"], env, tmp_path)

    assert result.returncode == 0, result.stderr


def test_the_web_starts_in_production_with_no_signing_key(tmp_path):
    env = {**PRODUCTION_ENV, "OPERATOR_PRIVATE_KEY": "", "ADMIN_PRIVATE_KEY": ""}

    result = run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], env, tmp_path
    )

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("role", ["operator", "admin"])
def test_production_never_falls_back_to_a_dev_key(role, tmp_path):
    name = f"{role.upper()}_PRIVATE_KEY"
    env = {**PRODUCTION_ENV, name: "", "DJANGO_SETTINGS_MODULE": "marketplace.settings"}
    script = (
        "import django; django.setup(); from chain.sender import signing_key; "
        f"signing_key({role!r})"
    )

    result = run([sys.executable, "-c", script], env, tmp_path)

    assert result.returncode == 1
    assert f"SettingError: {name} is not set: the {role} key is required" in result.stderr


def test_the_dev_keys_are_anvil_accounts_10_and_11(tmp_path):
    env = {"DJANGO_SETTINGS_MODULE": "marketplace.settings"}
    script = (
        "import django; django.setup(); from chain.sender import signing_address; "
        "print(signing_address('operator'), signing_address('admin'))"
    )

    result = run([sys.executable, "-c", script], env, tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "0xBcd4042DE499D14e55001CcbB24a551F3b954096",  # m/44'/60'/0'/0/10
        "0x71bE63f3384f5fb98995898A86B02Fb2426c5788",  # m/44'/60'/0'/0/11
    ]
