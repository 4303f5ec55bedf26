"""The operations, one module per resource, each a set of plain functions of the narrow
context (controller.ops.context.OpContext) and a request body, listed in its `HANDLERS`.

The map: `table.py` names every operation (its resource, who may call it, how a native body
is validated); `bind.py` binds the modules' functions to one context; `chain.py` is the one
way into an operation (validation, handler, after-steps). `core.py` and `context.py` are
what the functions receive, `common.py` and `task_writes.py` what several resources share.
"""
