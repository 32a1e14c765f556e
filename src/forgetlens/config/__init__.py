"""The options of every stage and how a YAML file becomes them.

``methods``: the fine-tuning methods, each declared once; ``options``: the dataclasses, their value sets and their
validation; ``loading``: YAML to dataclasses, and what changed between a run's recorded config and a resumed one.
The option classes are importable from here.
"""

from forgetlens.config.options import (
    AnatomyConfig,
    AuditConfig,
    BenchmarkConfig,
    DBMConfig,
    DiscoveryConfig,
    FinetuneConfig,
    MonitorConfig,
    OwnCircuitsConfig,
    PreserveConfig,
    ReplayConfig,
    RLConfig,
    StudyConfig,
    SweepConfig,
    deferred_validation,
)

__all__ = [
    "AnatomyConfig",
    "AuditConfig",
    "BenchmarkConfig",
    "DBMConfig",
    "DiscoveryConfig",
    "FinetuneConfig",
    "MonitorConfig",
    "OwnCircuitsConfig",
    "PreserveConfig",
    "ReplayConfig",
    "RLConfig",
    "StudyConfig",
    "SweepConfig",
    "deferred_validation",
]
