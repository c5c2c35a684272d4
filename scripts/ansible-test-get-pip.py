"""A stand-in for ansible-test's pip bootstrap script (get-pip.py), whose host
(ci-files.testing.ansible.com) this machine cannot reach: pip from the
interpreter's own ensurepip, then `pip install ARGS` from PyPI, which is what
ansible-test asks of get-pip.py. scripts/deps.sh copies it into ansible-test's
cache (livefs_python_tools)."""

import ensurepip
import os
import runpy
import ssl
import sys

ensurepip.bootstrap()
# ansible-test runs this with a pruned environment (no PIP_CERT, SSL_CERT_FILE):
# trust the system's CA store as this interpreter finds it, not pip's own bundle.
cafile = ssl.get_default_verify_paths().cafile
cert = ["--cert", cafile] if cafile and os.path.exists(cafile) else []
sys.argv = ["pip", "install"] + cert + sys.argv[1:]
runpy.run_module("pip", run_name="__main__", alter_sys=True)
