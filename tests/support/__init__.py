"""What the tests share: ``fixtures`` (the session-wide fixtures, a pytest plugin), ``cluster`` (starting a
sandbox, the fixture factory, the one kubectl wrapper, waiting) and ``objects`` (the resources as dicts)."""
