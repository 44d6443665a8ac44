"""Domain errors: each carries the HTTP status and code the API answers with, and nothing else of HTTP."""

from __future__ import annotations

from typing import Any


class FlightDelayError(Exception):
    """Base of every error the service reports to a client."""

    status = 500
    code = "internal_error"
    headers: dict[str, str] = {}

    def __init__(self, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors


class MalformedBody(FlightDelayError):
    """The request body cannot be read as JSON (bad syntax, not UTF-8, nested too deeply)."""

    status = 400
    code = "invalid_json"


class UnsupportedMediaType(FlightDelayError):
    """The request body comes in a content type the route does not read."""

    status = 415
    code = "unsupported_media_type"


class InvalidInput(FlightDelayError):
    """The request is well-formed JSON but its content is not acceptable."""

    status = 422
    code = "invalid_input"


class UnknownPrediction(FlightDelayError):
    """An actual names a history id that no recorded prediction has."""

    status = 422
    code = "unknown_prediction"


class UnknownModelVersion(FlightDelayError):
    """A model version was asked for that was never loaded here."""

    status = 404
    code = "unknown_model_version"


class UnknownReplay(FlightDelayError):
    """A replay's status was asked for under an id no replay has."""

    status = 404
    code = "unknown_replay"


class InvalidTraffic(FlightDelayError):
    """A traffic split that cannot be: a canary or shadow of the version already serving everything."""

    status = 422
    code = "invalid_traffic"


class NoPreviousVersion(FlightDelayError):
    """A rollback was asked for, but no version was active before the active one."""

    status = 409
    code = "no_previous_version"


class UnscorableFlight(FlightDelayError):
    """The active model could not produce a finite prediction for a flight."""

    status = 422
    code = "unscorable_flight"


class ModelNotLoaded(FlightDelayError):
    """No model is active, or the active model cannot be read."""

    status = 503
    code = "model_not_loaded"


class InvalidArtifact(FlightDelayError):
    """An uploaded file is not a readable model artifact."""

    status = 400
    code = "invalid_artifact"


class UnusableModel(FlightDelayError):
    """An uploaded model was read but cannot serve (no predict, wrong inputs, bad predictions)."""

    status = 422
    code = "unusable_model"


class ModelCheckFailed(FlightDelayError):
    """The sandbox checking an upload crashed, ran out of time or hit a resource limit: nothing loads."""

    status = 422
    code = "model_check_failed"


class ModelCheckUnavailable(FlightDelayError):
    """The model sandbox cannot be reached now (starting, restarting, busy): the upload may be retried."""

    status = 503
    code = "model_check_unavailable"
    headers = {"Retry-After": "5"}


class NotReady(FlightDelayError):
    """This replica cannot serve a prediction now: no model, a failing model, or no database writes."""

    status = 503
    code = "not_ready"


class HistoryUnavailable(FlightDelayError):
    """The prediction history cannot be written or read, so nothing may be served."""

    status = 503
    code = "history_unavailable"


class DatabaseUnavailable(FlightDelayError):
    """The database did not answer within its deadline (HISTORY_WRITE_TIMEOUT_S): refused, never a hang."""

    status = 503
    code = "database_unavailable"
    headers = {"Retry-After": "5"}


class Unauthorized(FlightDelayError):
    """The request lacks the token its route needs, or carries one that is none of this server's."""

    status = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": 'Bearer realm="flight-delay"'}


class Forbidden(FlightDelayError):
    """The request's token is one of this server's, but its role may not do this (a reader loading)."""

    status = 403
    code = "forbidden"


class UploadDisabled(FlightDelayError):
    """Model upload over HTTP is switched off on this server."""

    status = 403
    code = "upload_disabled"


class AdminTokenRequired(FlightDelayError):
    """A production server without an admin token refuses the admin writes it cannot authenticate."""

    status = 403
    code = "admin_token_required"


class ReaderTokenRequired(FlightDelayError):
    """A server outside development with no reader or admin token (and reading not public) refuses reads."""

    status = 403
    code = "reader_token_required"


class PredictTokenRequired(FlightDelayError):
    """Predictions need a token (ML_API_PREDICT_NEEDS_TOKEN) but no predict or admin token is configured."""

    status = 403
    code = "predict_token_required"


class SignatureRejected(FlightDelayError):
    """A signing key is configured and the upload's signature is missing or does not match."""

    status = 403
    code = "invalid_signature"


class ModelTooLarge(FlightDelayError):
    """The uploaded model file is larger than MAX_MODEL_BYTES."""

    status = 413
    code = "model_too_large"


class BodyTooLarge(FlightDelayError):
    """The request body is larger than MAX_REQUEST_BYTES."""

    status = 413
    code = "request_entity_too_large"


class BodyTimeout(FlightDelayError):
    """The client did not send the whole request body within ML_API_BODY_TIMEOUT_S."""

    status = 408
    code = "request_timeout"


class Overloaded(FlightDelayError):
    """The worker already has ML_API_MAX_CONCURRENT requests in flight: the client should retry shortly."""

    status = 503
    code = "overloaded"
    headers = {"Retry-After": "1"}


class UnsafeConfiguration(ValueError):
    """The service refuses to start with a configuration that would expose it."""


class DatabaseNotMigrated(ValueError):
    """The service refuses to start on a database whose schema is behind the code's migrations."""
