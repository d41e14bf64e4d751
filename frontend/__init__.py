"""The Shiny for Python frontend of fruitstack: talks only to the backend, over gRPC."""
