"""What the command line's commands do besides parsing: the models of a run (``run_models``:
seeded before the factories run), validating a config for a run (``validate_run``) and writing
a teacher cache offline (``cache_teacher``)."""
