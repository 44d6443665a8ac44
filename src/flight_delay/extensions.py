"""The app's extensions and services, created unbound here and bound in create_app."""

from flask_smorest import Api

from flight_delay.api.schemas import ErrorSchema
from flight_delay.history.database import Database
from flight_delay.history.service import HistoryService
from flight_delay.monitoring.gauges import MonitoringGauges
from flight_delay.monitoring.report import MonitoringService
from flight_delay.serving.predictions import PredictionService
from flight_delay.serving.registry import ModelRegistry


class FlightDelayApi(Api):
    """flask-smorest's Api documenting our one error shape for every error response."""

    ERROR_SCHEMA = ErrorSchema
    # No catch-all "default" response: each operation lists the statuses it really answers, so a
    # status it does not list is a documentation bug the fuzz tests catch.
    DEFAULT_ERROR_RESPONSE_NAME = None


api = FlightDelayApi()
db = Database()
registry = ModelRegistry()
predictions = PredictionService(registry, db)
history = HistoryService(db)
monitoring = MonitoringService(db)
monitoring_gauges = MonitoringGauges(monitoring)
