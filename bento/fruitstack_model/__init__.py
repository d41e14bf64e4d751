"""The model service's building blocks; `service.py` and `train.py` next to this folder use them."""
