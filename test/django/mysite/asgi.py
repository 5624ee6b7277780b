"""ASGI entry point, as `django-admin startproject` writes it.

Served with::

    bin/hornbeam run mysite.asgi:application --channel-module chat.channels
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

application = get_asgi_application()
