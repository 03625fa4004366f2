"""What the command line's commands do beyond a run: validating a config for a run
(``validate_run``) and writing a teacher cache offline (``cache_teacher``)."""
