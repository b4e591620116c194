from django.contrib import admin

from .models import IngestRecord, Instance, Patient, Series, Study


@admin.register(IngestRecord)
class IngestRecordAdmin(admin.ModelAdmin):
    """Received files and their outcome; filter on 'quarantined' to see refused files."""

    list_display = ("received_at", "state", "source", "source_detail", "reason", "size")
    list_filter = ("state", "source")
    search_fields = ("source_detail", "reason", "sop_instance_uid", "sha256")
    readonly_fields = [f.name for f in IngestRecord._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin):
    list_display = ("patient_name", "patient_id", "issuer_of_patient_id", "patient_birth_date")
    search_fields = ("patient_name_search", "patient_id")


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = (
        "study_instance_uid",
        "patient",
        "study_date",
        "modalities_in_study",
        "number_of_series",
        "number_of_instances",
    )
    search_fields = ("study_instance_uid", "accession_number")
    raw_id_fields = ("patient",)


@admin.register(Series)
class SeriesAdmin(admin.ModelAdmin):
    list_display = ("series_instance_uid", "modality", "series_description", "number_of_instances")
    raw_id_fields = ("study",)


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = (
        "sop_instance_uid",
        "instance_number",
        "transfer_syntax_uid",
        "viewable",
        "not_viewable_reason",
    )
    list_filter = ("viewable",)
    raw_id_fields = ("series",)
    exclude = ("dicom_json",)
