"""Serving: turning uploaded artifacts into models, keeping the active one, scoring flights."""
