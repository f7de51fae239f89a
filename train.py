#!/usr/bin/env python
"""Train a face-alignment model: a thin front end over :mod:`acrloss.train`."""
from acrloss.train import main

if __name__ == "__main__":
    main()
