"""URLs of the test project: the chat app's two views."""

from django.urls import path

from chat import views

urlpatterns = [
    path("stats/", views.stats),
    path("login/", views.login_view),
]
