"""Fruits: the small CRUD store (MongoDB `fruits` collection) and its gRPC service."""
