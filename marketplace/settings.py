"""Settings, read from the environment with working development defaults.

Development (DJANGO_DEBUG unset or 1): SQLite unless DATABASE_URL is set, local Redis, anvil and
IPFS node, anvil dev keys as operator and admin on chain 31337, and a master key generated into
.data/.
Production (DJANGO_DEBUG=0): secrets and hosts must come from the environment.
"""

from pathlib import Path

import dj_database_url

from marketplace.config import (
    SettingError,
    env_bool,
    env_float,
    env_int,
    env_rates,
    env_str,
    env_url,
    master_key,
    signing_keys_check,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("MARKETPLACE_DATA_DIR", str(BASE_DIR / ".data")))

DEBUG = env_bool("DJANGO_DEBUG", True)

if DEBUG:
    SECRET_KEY = env_str("DJANGO_SECRET_KEY", "dev-only-insecure-key-never-used-in-production")
    ALLOWED_HOSTS = env_str("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")
else:
    SECRET_KEY = env_str("DJANGO_SECRET_KEY")
    if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
        raise SettingError("DJANGO_SECRET_KEY is too weak: expected at least 50 random characters")
    ALLOWED_HOSTS = [h.strip() for h in env_str("DJANGO_ALLOWED_HOSTS").split(",") if h.strip()]

# The origin users open the marketplace at (scheme://host[:port]). A Sign-In with Ethereum message
# must name exactly this domain and URI, and a browser's session sign-in must come from it, so a
# message signed for another site, or a form on another site, never signs anyone in here.
PUBLIC_ORIGIN = env_url(
    "MARKETPLACE_PUBLIC_ORIGIN",
    f"http://127.0.0.1:{env_int('WEB_PORT', 8000, minimum=1)}"
    if DEBUG
    else f"https://{ALLOWED_HOSTS[0] if ALLOWED_HOSTS else 'localhost'}",
    schemes=("http", "https"),
).rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "marketplace",
    "chain",
    "datasets",
    "training",
    "validators",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "marketplace.middleware.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "marketplace.middleware.NodeOutageMiddleware",
]

ROOT_URLCONF = "marketplace.urls"
WSGI_APPLICATION = "marketplace.wsgi.application"
ASGI_APPLICATION = "marketplace.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "marketplace.context_processors.marketplace",
            ],
        },
    },
]

# A validator node (manage.py run_validator) runs this code with no marketplace database, broker
# or master key: it reads the public API, the chain and IPFS only.
VALIDATOR_NODE = env_bool("MARKETPLACE_VALIDATOR_NODE", False)

# Database: PostgreSQL when DATABASE_URL is set, SQLite otherwise.
_database_url = env_str("DATABASE_URL", "")
if VALIDATOR_NODE:
    DATABASES = {"default": {"ENGINE": "django.db.backends.dummy"}}
elif _database_url:
    try:
        DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=60)}
    except ValueError as exc:
        raise SettingError(
            f"DATABASE_URL is malformed ({exc}): expected postgres://user@host:port/name"
        ) from None
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "db.sqlite3",
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
            # A file, not memory: the Celery worker processes of the tests share it.
            "TEST": {"NAME": str(DATA_DIR / "test-db.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "marketplace.User"
LOGIN_URL = "signin"

AUTH_PASSWORD_VALIDATORS = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Production hardening (manage.py check --deploy passes with DJANGO_DEBUG=0).
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    CSRF_TRUSTED_ORIGINS = [f"https://{host}" for host in ALLOWED_HOSTS if host != "*"]

REST_FRAMEWORK = {
    # Token first, so that a request without credentials gets 401 with a WWW-Authenticate header.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "marketplace.authentication.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON bodies only (the upload declares its own multipart parser): one documented media type.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "marketplace.api.ContractSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "marketplace.errors.api_exception_handler",
    # Client IPs from REMOTE_ADDR, or from X-Forwarded-For behind that many proxies of ours (a
    # client's own X-Forwarded-For never picks its IP for the limits).
    "NUM_PROXIES": env_int("DJANGO_NUM_PROXIES", 0, minimum=0),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Data marketplace API",
    "DESCRIPTION": "List datasets, commission models, and collect earnings by contribution.",
    "VERSION": "0.1.0",
}

# Celery: Redis broker; status lives in our database, not in a result backend.
CELERY_BROKER_URL = env_url(
    "CELERY_BROKER_URL", "redis://127.0.0.1:6379/0", schemes=("redis", "rediss")
)
if VALIDATOR_NODE:  # it sends no task anywhere
    CELERY_BROKER_URL = "memory://"
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "marketplace")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 600, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 660, minimum=1)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5}
CELERY_BEAT_SCHEDULE: dict = {}  # filled in below, once the chain settings are known

# The chain.
CHAIN_RPC_URL = env_url("CHAIN_RPC_URL", "http://127.0.0.1:8545", schemes=("http", "https"))
CHAIN_ID = env_int("CHAIN_ID", 31337, minimum=1)
DEV_CHAIN_ID = 31337
# The signing keys, by role: the operator relays listings, settles and refunds; the admin deploys
# and sets fees and roles. Only workers hold them (the web never signs); the sender reads its key
# from the environment when it first signs (chain/sender.py), so nothing here keeps one.
SIGNING_KEY_SETTINGS = {"operator": "OPERATOR_PRIVATE_KEY", "admin": "ADMIN_PRIVATE_KEY"}
signing_keys_check(
    SIGNING_KEY_SETTINGS["operator"],
    SIGNING_KEY_SETTINGS["admin"],
    production=not DEBUG or CHAIN_ID != DEV_CHAIN_ID,
)
# Dev chain only: the keys default to anvil accounts 10 and 11 of the public test mnemonic (1-9
# are the users'), so a dev stack needs no key configured.
SIGNING_KEY_DEV_ACCOUNTS = {"operator": 10, "admin": 11} if CHAIN_ID == DEV_CHAIN_ID else {}
# Fee terms written into the escrow contract when it is deployed (its bounds: 20 %, 30 days).
ESCROW_COMPUTE_FEE_WEI = env_int("ESCROW_COMPUTE_FEE_WEI", 10**15, minimum=0)
ESCROW_FEE_BPS = env_int("ESCROW_FEE_BPS", 500, minimum=0, maximum=2_000)
ESCROW_REFUND_DELAY_SECONDS = env_int(
    "ESCROW_REFUND_DELAY_SECONDS", 86400, minimum=60, maximum=30 * 86400
)
# Validator terms written into the escrow when it is deployed (the admin may change them later
# with setValidatorTerms). A settlement needs ESCROW_QUORUM attestations from staked validators, of
# the ESCROW_VALIDATORS_PER_RUN asked to re-compute each run; each stakes ESCROW_MIN_STAKE_WEI.
ESCROW_MIN_STAKE_WEI = env_int("ESCROW_MIN_STAKE_WEI", 10**18, minimum=1, maximum=2**96 - 1)
# Seconds between a validator's unstake request and the withdrawal of its stake, during which it
# can still be slashed: long enough for a conflicting attestation to come to light (<= 30 days).
ESCROW_UNBONDING_DELAY_SECONDS = env_int(
    "ESCROW_UNBONDING_DELAY_SECONDS", 7 * 86400, minimum=3600, maximum=30 * 86400
)
ESCROW_VALIDATORS_PER_RUN = env_int("ESCROW_VALIDATORS_PER_RUN", 3, minimum=1, maximum=255)
ESCROW_QUORUM = env_int("ESCROW_QUORUM", 2, minimum=1, maximum=ESCROW_VALIDATORS_PER_RUN)
# The attesting validators' share of a job's fee, split equally among them (3000: 30 %).
ESCROW_VALIDATOR_FEE_BPS = env_int("ESCROW_VALIDATOR_FEE_BPS", 3000, minimum=0, maximum=10_000)
# The share of a slashed stake credited to whoever proved the equivocation; the rest is burned.
ESCROW_SLASH_REWARD_BPS = env_int("ESCROW_SLASH_REWARD_BPS", 5000, minimum=0, maximum=10_000)

# The RPC URL the browser's dev wallet talks to (only used on the dev chain).
# Empty: the same as CHAIN_RPC_URL.
CHAIN_PUBLIC_RPC_URL = env_str("CHAIN_PUBLIC_RPC_URL", "")
# Blocks the indexer stays behind the head, so a reorganisation never reaches our records.
CHAIN_CONFIRMATIONS = env_int(
    "CHAIN_CONFIRMATIONS", 0 if CHAIN_ID == DEV_CHAIN_ID else 3, minimum=0
)
CHAIN_INDEX_INTERVAL_SECONDS = env_int("CHAIN_INDEX_INTERVAL_SECONDS", 3, minimum=1)
# The most blocks one eth_getLogs asks for (public providers cap it, often at 1,000-10,000; a
# range still refused is halved), and the most the indexer takes in one tick.
CHAIN_LOG_RANGE_BLOCKS = env_int("CHAIN_LOG_RANGE_BLOCKS", 2000, minimum=1)
# Seconds an operator transaction may stay pending before it is replaced with higher fees.
CHAIN_TX_REPLACE_AFTER_SECONDS = env_int("CHAIN_TX_REPLACE_AFTER_SECONDS", 30, minimum=1)
# Seconds a step waits for its transaction to be mined before it retries (following the same one).
CHAIN_TX_WAIT_SECONDS = env_int("CHAIN_TX_WAIT_SECONDS", 120, minimum=1)
# Sign-In with Ethereum: how long a nonce (and a signed message) stays valid.
SIWE_NONCE_TTL_SECONDS = 600
# Limits per client IP and per signed-in identity ("<scope>_per_ip", "<scope>_per_identity"),
# counted in Redis; MARKETPLACE_THROTTLE_RATES="scope_per_ip=50/min,..." changes some of them.
THROTTLE_RATES = {
    "nonce_per_ip": "100/min",
    "signin_per_ip": "100/min",
    "did_per_ip": "120/min",
    "did_per_identity": "120/min",
    "verify_per_ip": "10/min",
    "verify_per_identity": "30/hour",
    "upload_per_ip": "30/hour",
    "upload_per_identity": "20/hour",
    "attest_per_ip": "1200/min",
}
THROTTLE_RATES.update(env_rates("MARKETPLACE_THROTTLE_RATES", THROTTLE_RATES))
# Bytes one identity may upload in 24 hours (each upload is also bounded by
# DATASET_MAX_UPLOAD_BYTES).
DATASET_UPLOAD_QUOTA_BYTES_PER_DAY = env_int(
    "DATASET_UPLOAD_QUOTA_BYTES_PER_DAY", 5 * 1024**3, minimum=1
)
# Seconds /healthz and the status page reuse their figures (each probe pings every node).
HEALTH_CACHE_SECONDS = env_int("HEALTH_CACHE_SECONDS", 5, minimum=0)
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "throttle": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env_url("THROTTLE_REDIS_URL", "redis://127.0.0.1:6379/2", schemes=("redis",)),
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    },
}
# How long an API token lasts; a sign-in issues a new one and sign-out revokes it.
API_TOKEN_TTL_DAYS = env_int("API_TOKEN_TTL_DAYS", 30, minimum=1)

# The IPFS node (any node speaking the standard /api/v0 RPC API).
IPFS_API_URL = env_url("IPFS_API_URL", "http://127.0.0.1:5001", schemes=("http", "https"))

# A run paid this long ago that no worker started is queued again (a lost or refused message).
TRAINING_RESUME_AFTER_SECONDS = env_int("TRAINING_RESUME_AFTER_SECONDS", 600, minimum=1)
CELERY_BEAT_SCHEDULE["training-resume-stalled"] = {
    "task": "training.resume_stalled",
    "schedule": 60.0,
    "options": {"expires": 60.0},
}
CELERY_BEAT_SCHEDULE["chain-index"] = {
    "task": "chain.index",
    "schedule": float(CHAIN_INDEX_INTERVAL_SECONDS),
    "options": {"expires": float(CHAIN_INDEX_INTERVAL_SECONDS)},
}

# Envelope encryption: per-dataset data keys are wrapped by this master key.
MASTER_KEY = (
    None
    if VALIDATOR_NODE
    else master_key(
        "MARKETPLACE_MASTER_KEY", dev_key_file=DATA_DIR / "master.key" if DEBUG else None
    )
)

# Validators: seconds a run waits for a quorum of attestations before it is refunded.
ATTESTATION_TIMEOUT_SECONDS = env_int("ATTESTATION_TIMEOUT_SECONDS", 1800, minimum=10)

# How long a health probe waits for each part before calling it down.
HEALTH_TIMEOUT_SECONDS = 2.0

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"web3": {"level": "WARNING"}, "urllib3": {"level": "WARNING"}},
}

# Datasets ---------------------------------------------------------------------------------------
# Uploads stream to temporary files here (never into memory), refused past the size limit.
DATASET_UPLOAD_DIR = DATA_DIR / "uploads"
DATASET_MAX_UPLOAD_BYTES = env_int("DATASET_MAX_UPLOAD_BYTES", 1024**3, minimum=1)
FILE_UPLOAD_HANDLERS = ["datasets.uploads.StreamToDiskUploadHandler"]
DATASET_MAX_COLUMNS = env_int("DATASET_MAX_COLUMNS", 1000, minimum=1)
DATASET_MAX_LINE_BYTES = env_int("DATASET_MAX_LINE_BYTES", 1024 * 1024, minimum=1024)
# A Parquet file's data decoded: at most this many bytes, and this many times the file's size
# (real tables compress some 2-20x; a crafted one thousands of times).
DATASET_MAX_DECODED_BYTES = env_int("DATASET_MAX_DECODED_BYTES", 4 * 1024**3, minimum=1024**2)
DATASET_MAX_DECODE_RATIO = env_int("DATASET_MAX_DECODE_RATIO", 200, minimum=2)
# How long an owner's listing signature stays valid (the EIP-712 deadline).
DATASET_SIGNATURE_TTL_SECONDS = env_int("DATASET_SIGNATURE_TTL_SECONDS", 7 * 86400, minimum=600)
# Jaccard similarity of distinct rows above which an upload is called a near-duplicate.
DATASET_NEAR_DUPLICATE_THRESHOLD = 0.5
# An upload is refused when at least this share of its rows are rows of another owner's listing
# (beyond what chance explains; see datasets/copycats.py).
DATASET_COPY_MATCH_FRACTION = env_float(
    "DATASET_COPY_MATCH_FRACTION", 0.5, minimum=0.05, maximum=1.0
)
# Time limits of the listing pipeline's steps (seconds).
DATASET_PROCESS_SOFT_TIME_LIMIT = env_int("DATASET_PROCESS_SOFT_TIME_LIMIT", 1800, minimum=10)
DATASET_PROCESS_TIME_LIMIT = DATASET_PROCESS_SOFT_TIME_LIMIT + 60
DATASET_REGISTER_SOFT_TIME_LIMIT = 180
DATASET_REGISTER_TIME_LIMIT = 240

# Privacy ----------------------------------------------------------------------------------------
# Nothing computed from rows leaves a worker unless it is the model the buyer paid for or an
# aggregate over at least this many rows (a category or class a model stores, a statistic, a bin).
PRIVACY_MIN_GROUP_ROWS = env_int("PRIVACY_MIN_GROUP_ROWS", 20, minimum=1)
# Rows every tree leaf of a model stands for at least (random forests; gradient boosting's own
# default is 20).
PRIVACY_MIN_LEAF_ROWS = env_int("PRIVACY_MIN_LEAF_ROWS", 10, minimum=1)
# Decrypted dataset bytes up to this size stay in memory in the worker, never on disk.
DATASET_DECRYPT_IN_MEMORY_MAX_BYTES = env_int(
    "DATASET_DECRYPT_IN_MEMORY_MAX_BYTES", 512 * 1024**2, minimum=0
)

# Training runs ----------------------------------------------------------------------------------
# A run that has not finished within this time is stopped and its escrow refunded.
TRAINING_SOFT_TIME_LIMIT_SECONDS = env_int("TRAINING_SOFT_TIME_LIMIT_SECONDS", 1800, minimum=1)
TRAINING_TIME_LIMIT_SECONDS = TRAINING_SOFT_TIME_LIMIT_SECONDS + 60
# Settling or refunding a run: one escrow transaction, followed to its receipt.
TRAINING_SETTLEMENT_SOFT_TIME_LIMIT = 300
TRAINING_SETTLEMENT_TIME_LIMIT = 360
# A run's settlement is looked at again just after its attestations' deadline (a countdown).
ATTESTATION_DEADLINE_CHECK_SECONDS = ATTESTATION_TIMEOUT_SECONDS + 1
# Training runs go to this queue. In production it is a queue of its own, consumed by dedicated
# (bigger) workers (`celery -A marketplace worker -Q training`); in development the one worker
# takes them from the default queue.
CELERY_TRAINING_QUEUE = env_str(
    "CELERY_TRAINING_QUEUE", CELERY_TASK_DEFAULT_QUEUE if DEBUG else "training"
)
# Only the training itself: settling and refunding are short chain steps that stay on the default
# queue, so a payout or a refund never waits behind long runs.
CELERY_TASK_ROUTES = {"training.run": {"queue": CELERY_TRAINING_QUEUE}}

# Redis broker: a message not acknowledged within the visibility timeout is delivered again, to
# another worker. Our steps are acknowledged when they finish (acks_late), and a message with a
# countdown stays unacknowledged from its delivery until it has run, so the timeout must outlast
# the longest countdown plus the longest time limit; the margin covers retries' backoff (at most
# 120 s) and clock skew between hosts.
CELERY_LONGEST_TIME_LIMIT_SECONDS = max(
    CELERY_TASK_TIME_LIMIT,
    DATASET_PROCESS_TIME_LIMIT,
    DATASET_REGISTER_TIME_LIMIT,
    TRAINING_TIME_LIMIT_SECONDS,
    TRAINING_SETTLEMENT_TIME_LIMIT,
)
CELERY_LONGEST_COUNTDOWN_SECONDS = ATTESTATION_DEADLINE_CHECK_SECONDS
CELERY_VISIBILITY_MARGIN_SECONDS = 600
CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] = (
    CELERY_LONGEST_COUNTDOWN_SECONDS
    + CELERY_LONGEST_TIME_LIMIT_SECONDS
    + CELERY_VISIBILITY_MARGIN_SECONDS
)
