"""ECS services: the model, a pure planner (`planner`, `world`, `model`, `scalein`), the
scheduler loop (`scheduler`), the service operations (`api`) and their wiring into the
controller (`wiring`). Importing the package loads none of them: the pure cores stay free of
the scheduler's I/O.
"""
