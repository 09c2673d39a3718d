"""The embedded local cloud: a moto server on 127.0.0.1 that the tool starts, seeds and stops itself.

- `process`: start, find and stop the server process (by the pid it recorded).
- `seed`: what an AWS account would already have (a hosted zone, a base image).
- `server`: the server's own entry point, `python -m deploy.localcloud.server` (also `python -m deploy.motoserver`).
- `fixes`: every place where moto differs from AWS, fixed inside the server, each saying what AWS does
  (`traffic_fixes`, `scaling_fixes`: scheduled actions run, a scale-in drains before it terminates).
- `runtime`: the server runs what was baked: an app process per running instance of an image that carries an app;
  `apps`: what an image carries, an app's process, the watchdog, the time scale.
- `balancers`: each load balancer is an HTTP endpoint on 127.0.0.1 (tagged `LocalCloudURL`, `proxy`), with real
  health checks (`health_checks`) and draining; `routing`: weighted target groups; `schedule`: the pure timing of
  scheduled actions and draining.
- `backends`: moto's backends as the runtime and balancers read them; `hooks`: what moto answers from what runs.

Nothing outside this package knows that the cloud is emulated.
"""
