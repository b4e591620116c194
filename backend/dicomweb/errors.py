"""Error answers: a status and a message in plain words, as JSON."""

from django.http import JsonResponse


class DicomWebError(Exception):
    """A request that cannot be answered as asked; views turn it into `status`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)
