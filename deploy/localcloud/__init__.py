"""The embedded local cloud: a moto server on 127.0.0.1 that the tool starts, seeds and stops itself.

- `process`: start, find and stop the server process (by the pid it recorded).
- `seed`: what an AWS account would already have (a hosted zone, a base image).
- `server`: the server's own entry point, `python -m deploy.localcloud.server` (also `python -m deploy.motoserver`).
- `fixes`: every place where moto differs from AWS, fixed inside the server, each saying what AWS does.

Nothing outside this package knows that the cloud is emulated.
"""
