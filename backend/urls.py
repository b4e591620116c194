from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from backend.archive import views as archive_views

urlpatterns = [
    path("", archive_views.worklist, name="worklist"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", archive_views.healthz, name="healthz"),
    path("api/studies", archive_views.study_list, name="api-studies"),
    path(
        "api/series/<int:series_id>/thumbnail",
        archive_views.series_thumbnail,
        name="api-series-thumbnail",
    ),
    path("admin/", admin.site.urls),
]
