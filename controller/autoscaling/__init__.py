"""Service auto scaling (issue 22): Application Auto Scaling for `ecs:service:DesiredCount`.

`target_tracking` and `schedule` are pure (decisions and firing times from what they are
given); the API and the loop that applies their decisions are in controller/ops/autoscaling.py.
"""
