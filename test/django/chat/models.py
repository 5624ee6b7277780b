"""The chat app's one model: a message posted to a room (a channel topic)."""

from django.conf import settings
from django.db import models


class Message(models.Model):
    room = models.CharField(max_length=100, db_index=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    body = models.TextField()
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.room}: {self.body[:40]}"
