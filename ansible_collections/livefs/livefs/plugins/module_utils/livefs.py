# -*- coding: utf-8 -*-
# Copyright (c) livefs developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Running livefs with --json and reading its answer.

livefs prints one JSON document on stdout for every command with --json: the
outcome, or on failure {"error": MESSAGE, "kind": KIND}. Modules decide from
that document only, never from text.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

# The options every livefs module takes: where the system is, which livefs.
COMMON_ARGS = dict(
    root=dict(type='path', default='/'),
    sysroot=dict(type='path'),
    executable=dict(type='path'),
    lock_timeout=dict(type='int', default=60),
)


def livefs_command(module, *args):
    """The livefs command line for ARGS, with the common options."""
    exe = module.params['executable'] or module.get_bin_path('livefs', required=True)
    cmd = [exe, '--root', module.params['root'], '--lock-timeout', str(module.params['lock_timeout'])]
    if module.params['sysroot']:
        cmd += ['--sysroot', module.params['sysroot']]
    return cmd + list(args) + ['--json']


def run_livefs(module, *args):
    """Runs livefs ARGS --json; returns (rc, document, stderr). A document that
    does not parse fails the module, naming the command."""
    cmd = livefs_command(module, *args)
    rc, out, err = module.run_command(cmd)
    try:
        doc = json.loads(out)
    except ValueError:
        module.fail_json(msg='livefs printed no JSON document', cmd=cmd, rc=rc, stdout=out, stderr=err)
    return rc, doc, err


def fail_on_error(module, rc, doc, err):
    """Fails the module when livefs answered with an error document."""
    if isinstance(doc, dict) and 'error' in doc and 'kind' in doc:
        # A rolled-back update's document says what failed and what was undone.
        extra = dict(outcome=doc) if len(doc) > 2 else {}
        module.fail_json(msg=doc['error'], kind=doc['kind'], rc=rc, stderr=err, **extra)
    if rc != 0:
        module.fail_json(msg='livefs failed (exit status %d)' % rc, rc=rc, stderr=err, outcome=doc)
