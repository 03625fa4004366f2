"""``distillation.train.teacher_cache`` read once into an object, and the one answer to "does
this run build and run its teacher" (the CLI, ``validate --for-run``, ``fit()`` and the
lifecycle all ask :func:`teacher_runs`)."""

import os
from dataclasses import dataclass

from neural_distill.criterion.registry import needs_teacher


@dataclass(frozen=True)
class TeacherCacheOptions:
    enabled: bool = False
    compression: str = "none"
    top_k: int = 4
    max_bytes: int = 1 << 30
    spill: bool = False
    min_hit_rate: float = 0.05
    offline_folder: str = None  # absolute; None when no `path` is configured

    @classmethod
    def from_section(cls, section, base_dir):
        """From the validated YAML section (defaults filled in by the schema) and the folder
        relative paths are read from (the config file's)."""
        section = dict(section or {})
        path = section.get("path")
        folder = None if path is None else (
            path if os.path.isabs(path) else os.path.join(base_dir, path))
        fields = {name: section[name] for name in
                  ("enabled", "compression", "top_k", "max_bytes", "spill", "min_hit_rate")
                  if section.get(name) is not None}
        return cls(offline_folder=folder, **fields)

    @property
    def in_use(self):
        """Whether the run has a cache at all (online, or an offline folder to read)."""
        return self.enabled or self.offline_folder is not None

    @property
    def offline_written(self):
        """Whether the offline folder holds a cache (``neural-distill cache-teacher`` ran)."""
        return self.offline_folder is not None and os.path.isfile(
            os.path.join(self.offline_folder, "index.json"))


def teacher_runs(criterion, options):
    """Whether a run builds and runs a teacher model: its criterion needs one (a criterion
    object, config or YAML section) and no written offline cache stands in for it."""
    return needs_teacher(criterion) and not options.offline_written
