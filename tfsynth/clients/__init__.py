"""Clients of a served tfsynth model, and a development stand-in for TF Serving.

* `tfsynth.clients.grpc_client`: ``SynthesisClient`` (gRPC, TF Serving's PredictionService).
* `tfsynth.clients.rest_client`: ``RestSynthesisClient`` (TF Serving's REST API).
* `tfsynth.clients.volumes`: NIfTI volumes to requests and answers back to files.
* `tfsynth.clients.dev_servicer`, `tfsynth.clients.dev_server`: the PredictionService that
  ``tfsynth dev-server`` runs (gRPC Predict and GetModelMetadata), not for production.
"""
