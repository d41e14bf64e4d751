"""Retraining, the backend's side: start runs of the Prefect deployment and report on them.

The backend never trains: it asks Prefect's REST API (prefect_api.py) for runs of the deployment
that the retraining runner (pipelines/) serves, and reads the outcomes the runs record in MongoDB
(repository.py). Retrainer (retrainer.py) is the logic, RetrainingServicer (servicer.py) the gRPC side.
"""
