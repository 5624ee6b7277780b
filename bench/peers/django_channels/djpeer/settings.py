"""Django settings of the Django Channels peers (bench/README.md): channels
only, no database; the in-memory channel layer, or channels_redis when
DJPEER_REDIS_URL names a Redis server (the django-channels-redis peer)."""

import os

SECRET_KEY = "hornbeam-bench-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["channels"]
ASGI_APPLICATION = "djpeer.asgi.application"
USE_TZ = True
DATABASES: dict = {}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels.layers.InMemoryChannelLayer",
        # The default capacity (100 messages per channel) drops broadcasts
        # under fan-out bursts; 1000 is a fairer setting for the benchmark.
        "CONFIG": {"capacity": 1000, "expiry": 60},
    }
}
REDIS_URL = os.environ.get("DJPEER_REDIS_URL")
if REDIS_URL:
    # What a Django Channels deployment uses as soon as it runs more than
    # one process: the default Redis layer, same capacity as above.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "capacity": 1000, "expiry": 60},
        }
    }
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "root": {"level": "WARNING", "handlers": []}}
