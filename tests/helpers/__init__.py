"""What several test modules share: paths of the repository and its data, small synthetic
volumes, command runners, stand-ins (a Hub, official checkpoints) and documentation parsing.

Importable as ``helpers`` because pyproject.toml puts ``tests`` on pytest's ``pythonpath``;
fixtures stay in ``tests/conftest.py``.
"""
