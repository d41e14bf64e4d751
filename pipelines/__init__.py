"""Scheduled retraining: the Prefect flow that retrains the model on what the system has learnt.

bento/ is not a package (`bentoml serve` imports service.py top-level), so its training code is
imported as the top-level modules `train` and `fruitstack_model`: whatever runs this package puts
bento/ on the path (the image sets PYTHONPATH, `nox -s dev` and the tests set it for the runner).
"""
