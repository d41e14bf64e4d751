"""The ceiling for Predict: a grpc.aio server answering Predict with a constant, doing no work.

It runs on uvloop like `python -m backend`, so the two differ only in the work done per call.

python -m bench.empty_server PORT
"""

from __future__ import annotations

import sys
from typing import Any

import uvloop
from fruitstack.v1 import predictions_pb2, predictions_pb2_grpc
from grpc import aio

# The same shape as a real answer for a three-class model.
ANSWER = predictions_pb2.PredictResponse(
    label="versicolor",
    probabilities={"setosa": 0.01, "versicolor": 0.9, "virginica": 0.09},
    model_version="empty",
)


class EmptyPredictionServicer(predictions_pb2_grpc.PredictionServiceServicer):
    async def Predict(
        self, request: predictions_pb2.PredictRequest, context: aio.ServicerContext[Any, Any]
    ) -> predictions_pb2.PredictResponse:
        return ANSWER


async def serve(port: int) -> None:
    server = aio.server()
    servicer = EmptyPredictionServicer()  # type: ignore[abstract]  # only Predict; others UNIMPLEMENTED
    predictions_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
