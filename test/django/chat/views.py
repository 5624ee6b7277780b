"""Plain (sync) Django views, served over HTTP by hornbeam through Django's
ASGI handler, in the same worker process as the channel handlers."""

import json

from django.contrib.auth import authenticate, get_user_model, login
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from chat.models import Message


@require_GET
def stats(request: HttpRequest) -> JsonResponse:
    """Row counts, read with the ORM."""
    rooms = {}
    for room in Message.objects.values_list("room", flat=True).distinct():
        rooms[room] = Message.objects.filter(room=room).count()
    return JsonResponse({"users": get_user_model().objects.count(),
                         "messages": Message.objects.count(), "rooms": rooms})


@csrf_exempt  # a JSON API for scripted clients; a browser form would keep CSRF
@require_POST
def login_view(request: HttpRequest) -> JsonResponse:
    """``{"username", "password"}`` → a session cookie (``sessionid``)."""
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return JsonResponse({"error": "invalid JSON"}, status=400)
    user = authenticate(request, username=body.get("username"), password=body.get("password"))
    if user is None:
        return JsonResponse({"error": "invalid credentials"}, status=403)
    login(request, user)
    return JsonResponse({"username": user.get_username()})
