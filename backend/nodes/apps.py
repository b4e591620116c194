from django.apps import AppConfig


class NodesConfig(AppConfig):
    name = "backend.nodes"
    label = "nodes"
    verbose_name = "DICOM nodes"
