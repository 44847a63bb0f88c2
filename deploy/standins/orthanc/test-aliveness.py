#!/usr/bin/env python3
"""Healthcheck: Orthanc answers its REST API (the official image ships a probe of this name)."""

import sys
import urllib.request

try:
    urllib.request.urlopen("http://127.0.0.1:8042/system", timeout=3)
except OSError:
    sys.exit(1)
