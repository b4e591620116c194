from django.urls import path

from .consumers import WorklistConsumer
from .viewer import ViewerConsumer

websocket_urlpatterns = [
    path("ws/worklist", WorklistConsumer.as_asgi()),
    path("ws/viewer/<str:study>", ViewerConsumer.as_asgi()),
]
