"""The options of every stage and how a YAML file becomes them.

``options``: the dataclasses, their value sets and their validation; ``loading``: YAML to dataclasses, and what
changed between a run's recorded config and a resumed one.
"""
