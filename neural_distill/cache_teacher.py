"""Moved to ``neural_distill.commands.cache_teacher`` (the package root keeps public faces only).

Kept because earlier docs named ``neural_distill.cache_teacher.write_offline_cache``; new code
writes ``neural_distill.write_offline_cache``.
"""

from neural_distill.commands.cache_teacher import write_offline_cache

__all__ = ["write_offline_cache"]
