"""Scheduled model and data monitor."""
