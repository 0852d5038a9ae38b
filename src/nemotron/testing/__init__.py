"""Helpers for the test suite that are also useful outside it (e.g. a throwaway Slurm cluster).

Nothing here is imported by the CLI; every module uses only the standard library so that the
scripts in ``scripts/`` can run it with the system Python before the project's venv exists.
"""
