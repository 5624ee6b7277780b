"""Django settings of the Django Channels peer (bench/README.md): channels
only, the in-memory channel layer, no database."""

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
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "root": {"level": "WARNING", "handlers": []}}
