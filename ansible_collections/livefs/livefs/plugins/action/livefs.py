# -*- coding: utf-8 -*-
# Copyright (c) livefs developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The action of livefs.livefs.livefs: runs the module on the host; when it
applied an update with confirm_within, confirms it over a new connection.

The confirmation is the proof that the host is still reachable after the
update: the connection the apply used is closed (reset), and only a new one
runs `livefs confirm`. If the host cannot be reached, the task fails and
livefs rolls the update back by itself at the deadline (a systemd timer on
the host), as deploy-rs's "magic rollback" does.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.plugins.action import ActionBase

# The options the confirmation needs from the task: where the system is, which livefs.
COMMON = ('root', 'sysroot', 'executable', 'lock_timeout')


class ActionModule(ActionBase):

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        args = self._task.args
        result.update(self._execute_module(module_args=args, task_vars=task_vars))
        confirm = result.get('confirm')
        if result.get('failed') or self._play_context.check_mode or not args.get('confirm_within') or not confirm:
            return result
        # A new connection: the one the apply used may be what the update broke.
        self._connection.reset()
        confirm_args = dict((k, args[k]) for k in COMMON if k in args)
        confirm_args['state'] = 'confirmed'
        try:
            confirmed = self._execute_module(module_args=confirm_args, task_vars=task_vars)
        except Exception as e:  # the host is unreachable: its timer rolls the update back
            confirmed = dict(failed=True, msg='cannot reach the host to confirm: %s' % e)
        if confirmed.get('failed') or confirmed.get('unreachable'):
            result.update(
                failed=True,
                confirmed=False,
                msg='the update was applied but could not be confirmed over a new connection (%s); '
                    'livefs rolls it back at %s' % (confirmed.get('msg', 'unreachable'), confirm.get('deadline')),
            )
        else:
            result['confirmed'] = True
        return result
