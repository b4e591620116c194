"""The DICOM index: Patient → Study → Series → Instance (PS3.3 §A.1.2 information model),
plus one IngestRecord per received file.

The database and the stored files are the source of truth. Rows are upserted by DICOM UID,
so receiving the same object twice changes nothing.
"""

import uuid

from django.db import models
from django.db.models import Q


class LongTextField(models.TextField):
    """A text column whose bulk inserts bind each value on its own.

    Django 5.2 bulk-inserts PostgreSQL rows as one array per column (INSERT ... UNNEST),
    unless a field has get_placeholder. psycopg writes a text array in Python, escaping
    each quote with a regular expression. For a batch of 64 CT instances, each with about
    4 kB of DICOM JSON, the insert took 80 ms as arrays and 30 ms as values.
    """

    def get_placeholder(self, value, compiler, connection) -> str:
        return "%s"


class Patient(models.Model):
    """A patient as the sending system identified them.

    PatientID alone does not identify a person: two issuers may hand out the same ID
    (IssuerOfPatientID, PS3.3 §C.7.1.1), and one ID may arrive under two names. Both cases
    give separate rows, so nothing a sender said is silently overwritten.
    """

    patient_id = models.CharField(max_length=64, blank=True, db_index=True)
    issuer_of_patient_id = models.CharField(max_length=64, blank=True)
    patient_name = models.TextField(blank=True)
    # Upper-case, accent-free, '^' and '=' as spaces: what name searches compare against.
    patient_name_search = models.TextField(blank=True, db_index=True)
    patient_birth_date = models.DateField(null=True, blank=True)
    patient_sex = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["patient_id", "issuer_of_patient_id", "patient_name"],
                name="patient_identity",
            )
        ]

    def __str__(self) -> str:
        return f"{self.patient_name} ({self.patient_id})"


class Study(models.Model):
    study_instance_uid = models.CharField(max_length=64, unique=True)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="studies")
    study_date = models.DateField(null=True, blank=True, db_index=True)
    study_time = models.TimeField(null=True, blank=True)
    accession_number = models.CharField(max_length=64, blank=True, db_index=True)
    study_id = models.CharField(max_length=64, blank=True)
    study_description = models.TextField(blank=True)
    study_description_search = models.TextField(blank=True, db_index=True)
    referring_physician_name = models.TextField(blank=True)
    referring_physician_search = models.TextField(blank=True, db_index=True)
    institution_name = models.TextField(blank=True)
    # Backslash-separated, as DICOM writes multi-valued CS (PS3.5 §6.4).
    modalities_in_study = models.CharField(max_length=255, blank=True, db_index=True)
    number_of_series = models.PositiveIntegerField(default=0)
    number_of_instances = models.PositiveIntegerField(default=0)
    size_bytes = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        verbose_name_plural = "studies"
        # The worklist sorts by each of these, then by id so pages never overlap
        # (backend/archive/worklist.py); each index serves both directions. Newest study
        # date first has its own index on PostgreSQL (migration 0004: NULLS LAST).
        indexes = [
            models.Index(fields=["-study_date", "-study_time"], name="study_date_desc"),
            models.Index(fields=["updated_at", "id"], name="worklist_received"),
            models.Index(fields=["accession_number", "id"], name="worklist_accession"),
            models.Index(fields=["study_description_search", "id"], name="worklist_description"),
            models.Index(fields=["modalities_in_study", "id"], name="worklist_modalities"),
            models.Index(fields=["number_of_series", "id"], name="worklist_series"),
            models.Index(fields=["number_of_instances", "id"], name="worklist_images"),
        ]

    def __str__(self) -> str:
        return self.study_instance_uid


class Series(models.Model):
    series_instance_uid = models.CharField(max_length=64, unique=True)
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="series")
    modality = models.CharField(max_length=16, blank=True, db_index=True)
    series_number = models.IntegerField(null=True, blank=True)
    series_description = models.TextField(blank=True)
    series_date = models.DateField(null=True, blank=True)
    series_time = models.TimeField(null=True, blank=True)
    body_part_examined = models.CharField(max_length=64, blank=True)
    frame_of_reference_uid = models.CharField(max_length=64, blank=True)
    number_of_instances = models.PositiveIntegerField(default=0)
    # Derivation (slice order, thumbnail, /metadata) runs once per burst of arrivals:
    # indexing bumps derive_requested, the task records the version it derived.
    derive_requested = models.PositiveIntegerField(default=0)
    derived_version = models.PositiveIntegerField(default=0)
    derive_scheduled = models.BooleanField(default=False)
    derived_at = models.DateTimeField(null=True, blank=True)
    thumbnail_key = models.CharField(max_length=128, blank=True)
    metadata_key = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "series"
        indexes = [
            models.Index(
                fields=["updated_at"],
                name="series_derive_pending",
                condition=Q(derive_scheduled=True),
            )
        ]

    def __str__(self) -> str:
        return self.series_instance_uid

    @property
    def is_derived(self) -> bool:
        return self.derived_version >= self.derive_requested


class Instance(models.Model):
    sop_instance_uid = models.CharField(max_length=64, unique=True)
    sop_class_uid = models.CharField(max_length=64)
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="instances")
    instance_number = models.IntegerField(null=True, blank=True)
    transfer_syntax_uid = models.CharField(max_length=64)
    specific_character_set = models.CharField(max_length=255, blank=True)
    content_date = models.DateField(null=True, blank=True)
    content_time = models.TimeField(null=True, blank=True)

    # Geometry (PS3.3 §C.7.6.2): lists of floats as in the file.
    image_position_patient = models.JSONField(null=True, blank=True)
    image_orientation_patient = models.JSONField(null=True, blank=True)
    pixel_spacing = models.JSONField(null=True, blank=True)
    slice_thickness = models.FloatField(null=True, blank=True)
    slice_location = models.FloatField(null=True, blank=True)
    frame_of_reference_uid = models.CharField(max_length=64, blank=True)
    # Position in the series' slice order; set by series derivation.
    slice_index = models.IntegerField(null=True, blank=True)

    # Pixel description (PS3.3 §C.7.6.3) and grey-scale pipeline (§C.11).
    rows = models.PositiveIntegerField(null=True, blank=True)
    columns = models.PositiveIntegerField(null=True, blank=True)
    number_of_frames = models.PositiveIntegerField(default=1)
    samples_per_pixel = models.PositiveSmallIntegerField(null=True, blank=True)
    bits_allocated = models.PositiveSmallIntegerField(null=True, blank=True)
    bits_stored = models.PositiveSmallIntegerField(null=True, blank=True)
    pixel_representation = models.PositiveSmallIntegerField(null=True, blank=True)
    photometric_interpretation = models.CharField(max_length=32, blank=True)
    rescale_slope = models.FloatField(null=True, blank=True)
    rescale_intercept = models.FloatField(null=True, blank=True)
    window_center = models.JSONField(null=True, blank=True)
    window_width = models.JSONField(null=True, blank=True)
    voi_lut_function = models.CharField(max_length=16, blank=True)
    # Lookup tables from the file (backend/imaging/luts.py): the Modality LUT Sequence's
    # (C.11.1) and the VOI LUT Sequence's items (C.11.2), for the viewer.
    modality_lut = models.JSONField(null=True, blank=True)
    voi_luts = models.JSONField(default=list, blank=True)

    # The original file, byte for byte.
    object_key = models.CharField(max_length=128)
    file_size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)

    # Frames ready for streaming: raw little-endian values, frame i at
    # frames_offset + i * rows * columns * samples * itemsize of frames_key (which may be the
    # original file itself when its pixel data needs no decoding).
    viewable = models.BooleanField(default=False)
    not_viewable_reason = models.TextField(blank=True)
    frames_key = models.CharField(max_length=128, blank=True)
    frames_offset = models.BigIntegerField(null=True, blank=True)
    frame_dtype = models.CharField(max_length=8, blank=True)
    frame_photometric = models.CharField(max_length=16, blank=True)
    frame_samples = models.PositiveSmallIntegerField(null=True, blank=True)
    pixel_min = models.FloatField(null=True, blank=True)
    pixel_max = models.FloatField(null=True, blank=True)

    # DICOM JSON (PS3.18 §F.2) of the header with BulkDataURIs, for WADO-RS /metadata,
    # kept serialised: responses concatenate it, nothing queries inside it.
    dicom_json = LongTextField(default="{}")
    warnings = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["series", "slice_index"], name="instance_order")]

    def __str__(self) -> str:
        return self.sop_instance_uid


class StudySource(models.Model):
    """Where a study's instances came from: one row per source, calling AE and user."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="sources")
    source = models.CharField(max_length=16)
    calling_ae = models.CharField(max_length=16, blank=True, db_index=True)
    user = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    # "ae:<calling AE>", "user:<id>" or "": what makes a source unique (no NULLs involved).
    sender = models.CharField(max_length=32, blank=True)
    first_received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "source", "sender"], name="study_source_once")
        ]

    def __str__(self) -> str:
        return f"{self.study_id} from {self.source} {self.calling_ae or self.user_id or ''}"


class IngestRecord(models.Model):
    """One received file, from the moment it is durable in the spool to its outcome.

    The id is the spool file's name and the Celery task's argument.
    """

    class State(models.TextChoices):
        PENDING = "pending"  # durable in the spool, waiting for (or in) a worker
        STORED = "stored"  # indexed as a new instance
        REPLACED = "replaced"  # indexed, replacing a different file with the same SOPInstanceUID
        DUPLICATE = "duplicate"  # byte-identical to what is stored: nothing changed
        QUARANTINED = "quarantined"  # unusable: kept aside with the reason

    FINAL_STATES = (State.STORED, State.REPLACED, State.DUPLICATE, State.QUARANTINED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.PENDING, db_index=True
    )
    source = models.CharField(max_length=16)  # cli, dimse, stow, upload, recovered
    source_detail = models.TextField(blank=True)  # file name, calling AE title, user
    # Who sent it: the calling AE title (DICOM) or the user (STOW-RS, upload). Group rules
    # and the uploader role decide access by these (backend/archive/access.py).
    calling_ae = models.CharField(max_length=16, blank=True)
    user = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    reason = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)  # indexing attempts it took
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    sop_instance_uid = models.CharField(max_length=64, blank=True)
    study_instance_uid = models.CharField(max_length=64, blank=True)
    instance = models.ForeignKey(Instance, null=True, blank=True, on_delete=models.SET_NULL)
    # Where the file is kept now: objects/... once indexed, quarantine/... if refused.
    object_key = models.CharField(max_length=128, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["received_at"],
                name="ingest_unfinished",
                condition=Q(state="pending"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.state}"

    @property
    def is_final(self) -> bool:
        return self.state in self.FINAL_STATES


class StudyOpened(models.Model):
    """When a user last opened a study in the viewer: the worklist marks a study new to them
    until they open it, and again when it grows afterwards."""

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="+")
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="+")
    opened_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "study"], name="study_opened_once")]

    def __str__(self) -> str:
        return f"{self.user_id} opened {self.study_id} at {self.opened_at}"
