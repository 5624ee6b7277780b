"""Settings of the Django test project (test/django/README.md).

A plain Django 5 project on SQLite. The database file is
``$HORNBEAM_DJANGO_DB`` when set (the tests put it in their own directory),
else ``db.sqlite3`` next to manage.py.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "hornbeam-django-test-project-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "mysite.urls"
ASGI_APPLICATION = "mysite.asgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("HORNBEAM_DJANGO_DB") or str(BASE_DIR / "db.sqlite3"),
        # Django's default: a connection lives for one request (or one
        # channel handler), then close_old_connections() closes it.
        "CONN_MAX_AGE": 0,
    }
}

# A test project: a cheap password hash keeps createsuperuser and login fast
# on a loaded CI machine. Keep Django's default hashers in a real project.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "WARNING"},
}
