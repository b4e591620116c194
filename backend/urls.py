from django.contrib import admin
from django.urls import include, path

from backend.archive import views as archive_views
from backend.dicomweb import views as dicomweb_views
from backend.live import views as live_views
from backend.nodes import views as node_views

urlpatterns = [
    path("", archive_views.worklist_page, name="worklist"),
    path("", include("backend.accounts.urls_auth")),
    path("manage/", include("backend.accounts.urls_manage")),
    path("healthz", archive_views.healthz, name="healthz"),
    path("viewer/<str:study_instance_uid>", live_views.viewer, name="viewer"),
    path("api/me", live_views.me, name="api-me"),
    path(
        "api/studies/<str:study_instance_uid>/annotations",
        live_views.study_annotations,
        name="api-study-annotations",
    ),
    path("api/annotations/<int:annotation_id>", live_views.annotation, name="api-annotation"),
    path(
        "api/studies/<str:study_instance_uid>/instances/<str:sop_instance_uid>/tags",
        live_views.instance_tags,
        name="api-instance-tags",
    ),
    path("api/studies", archive_views.study_list, name="api-studies"),
    path("api/upload", archive_views.upload, name="api-upload"),
    path("api/upload/status", archive_views.upload_status, name="api-upload-status"),
    path(
        "api/series/<int:series_id>/thumbnail",
        archive_views.series_thumbnail,
        name="api-series-thumbnail",
    ),
    path("nodes/", node_views.nodes_page, name="nodes"),
    path("api/nodes", node_views.node_list, name="api-nodes"),
    path("api/nodes/<str:ae_title>/echo", node_views.echo, name="api-node-echo"),
    path("api/nodes/<str:ae_title>/find", node_views.find, name="api-node-find"),
    path("api/nodes/<str:ae_title>/retrieve", node_views.retrieve, name="api-node-retrieve"),
    path("api/nodes/<str:ae_title>/send", node_views.send, name="api-node-send"),
    path("api/jobs", node_views.job_list, name="api-jobs"),
    path("api/jobs/<int:job_id>", node_views.job_detail, name="api-job"),
    path("dicomweb/", include("backend.dicomweb.urls")),
    path("wado", dicomweb_views.wado_uri, name="wado-uri"),
    path("admin/", admin.site.urls),
]
