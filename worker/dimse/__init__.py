"""The DICOM receiver (`python -m worker.dimse`): pynetdicom handlers calling the same
ingest, authorization, audit and query services as the web endpoints."""
