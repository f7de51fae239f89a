#!/usr/bin/env python
"""Evaluate a checkpoint: a thin front end over :mod:`acrloss.test`."""
from acrloss.test import main

if __name__ == "__main__":
    main()
