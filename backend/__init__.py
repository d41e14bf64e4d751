"""The fruitstack gRPC backend: the fruit store on MongoDB and predictions through the model service."""
