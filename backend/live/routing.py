from django.urls import path

from .consumers import WorklistConsumer

websocket_urlpatterns = [path("ws/worklist", WorklistConsumer.as_asgi())]
