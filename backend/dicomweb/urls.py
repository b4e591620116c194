"""/dicomweb paths (PS3.18 §10.4-10.6). UIDs are checked in the views."""

from django.urls import path, re_path

from . import views

STUDY = "studies/<str:study>"
SERIES = f"{STUDY}/series/<str:series>"
INSTANCE = f"{SERIES}/instances/<str:instance>"
FRAMES = f"{INSTANCE}/frames/<str:frames>"

urlpatterns = [
    path("studies", views.studies, name="dicomweb-studies"),
    path("series", views.search_series, name="dicomweb-series"),
    path("instances", views.search_instances, name="dicomweb-instances"),
    path(STUDY, views.study, name="dicomweb-study"),
    path(f"{STUDY}/metadata", views.study_metadata, name="dicomweb-study-metadata"),
    path(f"{STUDY}/rendered", views.study_rendered, name="dicomweb-study-rendered"),
    path(f"{STUDY}/thumbnail", views.study_thumbnail, name="dicomweb-study-thumbnail"),
    path(f"{STUDY}/series", views.study_series, name="dicomweb-study-series"),
    path(f"{STUDY}/instances", views.study_instances, name="dicomweb-study-instances"),
    path(SERIES, views.series, name="dicomweb-series-retrieve"),
    path(f"{SERIES}/metadata", views.series_metadata, name="dicomweb-series-metadata"),
    path(f"{SERIES}/rendered", views.series_rendered, name="dicomweb-series-rendered"),
    path(f"{SERIES}/thumbnail", views.series_thumbnail, name="dicomweb-series-thumbnail"),
    path(f"{SERIES}/instances", views.series_instances, name="dicomweb-series-instances"),
    path(INSTANCE, views.instance, name="dicomweb-instance"),
    path(f"{INSTANCE}/metadata", views.instance_metadata, name="dicomweb-instance-metadata"),
    path(f"{INSTANCE}/rendered", views.instance_rendered, name="dicomweb-instance-rendered"),
    path(f"{INSTANCE}/thumbnail", views.instance_thumbnail, name="dicomweb-instance-thumbnail"),
    path(f"{INSTANCE}/bulkdata/<path:tag>", views.bulkdata, name="dicomweb-bulkdata"),
    path(FRAMES, views.frames, name="dicomweb-frames"),
    path(f"{FRAMES}/rendered", views.frame_rendered, name="dicomweb-frame-rendered"),
    path(f"{FRAMES}/thumbnail", views.frame_thumbnail, name="dicomweb-frame-thumbnail"),
    re_path(r"^(?P<path>.*)$", views.not_found),
]
