"""Bridges to other toolkits (optional extras): :mod:`rankstack.integrations.pyterrier`."""
