"""Monitoring the served model: the prediction log, feedback, drift and live accuracy."""
