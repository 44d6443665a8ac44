"""Monitoring from the history: actual arrival delays, live accuracy, drift against the training profile."""
