"""Looking at a finished run: the end-of-run summary and the teacher-vs-student report.

Importing this package loads no framework and no matplotlib; they load when a report is built.
"""

from neural_distill.report.build import Report, report
from neural_distill.report.gate import RequirementError
from neural_distill.report.summary import end_of_run, summary_lines

__all__ = ["Report", "report", "RequirementError", "end_of_run", "summary_lines"]
