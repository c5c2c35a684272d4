#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) livefs developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: livefs
short_description: Apply an OSTree update to a running host without a reboot
description:
  - Brings the running C(/usr) and C(/etc) of an OSTree host (rpm-ostree, bootc or plain ostree) to the
    pending deployment (or O(target)) live, with C(livefs apply); back to the booted commit with
    C(livefs reset); or restarts what earlier live updates left running old code, with C(livefs restart).
  - Decides C(changed) from livefs's JSON, never from its text. In check mode livefs runs with C(--dry-run),
    and nothing changes. In diff mode the before and after commits and the paths of C(/usr) are shown.
  - An update that needs more than O(max_strategy) (a soft reboot, a reboot) is refused before anything
    changes; the result then says what it needs. Use RV(needs_reboot) to reboot only the hosts that need it.
  - After an update, livefs checks its health (the units it acted on, greenboot's checks, O(checks)); an
    update that fails them is rolled back at once and the task fails with kind C(rolled_back).
  - With O(confirm_within), the update is rolled back by the host itself unless confirmed in time; the
    module confirms it over a new connection (proof that the host is still reachable), as deploy-rs does.
version_added: 0.1.0
author: livefs developers (@livefs)
options:
  state:
    description:
      - V(live) applies the pending deployment (or O(target)) to the running system.
      - V(reset) brings C(/usr) and C(/etc) back to the booted commit.
      - V(restarted) restarts, reloads, stops and starts units as a boot would, for what earlier live updates
        of this boot changed.
      - V(rolled_back) undoes the last live update (C(livefs rollback)), back to the previous live commit, or
        to the booted one.
      - V(confirmed) keeps an update applied with O(confirm_within) (C(livefs confirm)).
    type: str
    choices: [live, reset, restarted, rolled_back, confirmed]
    default: live
  target:
    description:
      - The commit to apply (a checksum, a unique prefix, a ref); default the pending deployment.
      - Only with O(state=live).
    type: str
  allow_replacement:
    description:
      - Allow changing and removing existing files of C(/usr), not only adding. Without it an update that
        replaces files fails with kind C(refused_replacement).
    type: bool
    default: false
  restart:
    description:
      - After the update, restart what it left running old code and start what it newly enabled, as a boot would.
    type: bool
    default: false
  max_strategy:
    description:
      - The most disruptive strategy accepted. An update that needs more fails with kind C(refused_strategy),
        having changed nothing.
    type: str
    choices: [live, soft-reboot, reboot]
    default: reboot
  checks:
    description:
      - More required health checks after the update (C(--check)), shell commands that must exit 0, or the
        update is rolled back.
    type: list
    elements: str
    default: []
  settle:
    description:
      - How long, in seconds, the units the update acted on must stay up (C(--settle)).
    type: int
    default: 10
  rollback:
    description:
      - Roll an update that fails its health checks back. With V(false) it is kept and the task fails with
        kind C(check_failed).
    type: bool
    default: true
  confirm_within:
    description:
      - Seconds within which the update must be confirmed, or the host rolls it back by itself (a systemd timer,
        whatever happens to the connection). The module confirms it over a new connection once the apply
        returned; if the host cannot be reached, the task fails and the host rolls back at the deadline.
      - Only with O(state=live), and not in check mode.
    type: int
extends_documentation_fragment:
  - livefs.livefs.livefs
attributes:
  check_mode:
    description: Runs livefs with C(--dry-run); C(changed) says whether the real run would change the host.
    support: full
  diff_mode:
    description: Shows the commit before and after, the counts and the paths of C(/usr) and C(/etc) it changes.
    support: full
notes:
  - livefs must be installed on the managed host; the module runs it with C(--json).
  - Failures carry livefs's C(kind) (C(busy), C(interrupted), C(refused_replacement), C(refused_strategy),
    C(unsupported_host), C(bad_revision), C(bad_repository), C(unit_failed), C(error)).
seealso:
  - module: livefs.livefs.livefs_info
'''

EXAMPLES = r'''
- name: Apply the pending deployment live, restarting what it changed
  livefs.livefs.livefs:
    allow_replacement: true
    restart: true
  register: update

- name: Reboot only where the update needs it
  ansible.builtin.reboot:
  when: update.needs_reboot

- name: Only updates that go live whole
  livefs.livefs.livefs:
    max_strategy: live

- name: Apply, and keep it only if the host is still reachable over a new connection within 2 minutes
  livefs.livefs.livefs:
    allow_replacement: true
    restart: true
    confirm_within: 120
    checks:
      - curl -fsS http://localhost/health

- name: Undo the last live update
  livefs.livefs.livefs:
    state: rolled_back
    restart: true

- name: Go back to the booted commit
  livefs.livefs.livefs:
    state: reset

- name: Restart what earlier live updates left running old code
  livefs.livefs.livefs:
    state: restarted
'''

RETURN = r'''
outcome:
  description: livefs's whole JSON report (see C(docs/schema/) in the livefs sources).
  returned: success
  type: dict
state:
  description: The live state afterwards (C(booted), C(live) with its commit, C(applying)).
  returned: when O(state) is V(live) or V(reset) and a transition ran
  type: dict
  sample: {"state": "live", "commit": "d89e7efb297195571d69d17e52f8bbc00ea224c69ae91532d9ffa1b27d4ed924"}
strategy:
  description: What the update needs to take effect whole, with the reasons of each tier.
  returned: when O(state=live) and a deployment is pending
  type: dict
  contains:
    needs:
      description: V(live), V(soft-reboot) or V(reboot).
      type: str
    reboot_for:
      description: What only a reboot delivers.
      type: list
      elements: str
    soft_reboot_for:
      description: What a soft reboot delivers and a live apply cannot finish.
      type: list
      elements: str
needs_reboot:
  description: The update needs a soft reboot or a reboot to take effect whole.
  returned: always
  type: bool
soft_reboot_capable:
  description: A soft reboot into the target is possible on this host.
  returned: always
  type: bool
restarted:
  description: The unit actions taken (or, in check mode, that would be), each with its result.
  returned: when O(restart=true) or O(state=restarted)
  type: list
  elements: dict
needs_restart:
  description: Units and processes that still run replaced code afterwards.
  returned: success
  type: dict
etc:
  description: What happened to each C(/etc) path the update changes (added, updated, removed, kept, conflict, failed).
  returned: when O(state) is V(live) or V(reset)
  type: list
  elements: dict
kind:
  description: Why livefs failed (V(rolled_back) when the update failed its health checks and was rolled back),
    or V(no_pending) when nothing was pending, V(no_rollback) when nothing was left to roll back.
  returned: on failure, and when there was nothing to do
  type: str
health:
  description: The health checks after the update (units, greenboot's checks, O(checks)) and their verdict.
  returned: when O(state=live) and the update changed the host
  type: dict
confirm:
  description: The confirmation awaited (O(confirm_within)), with its deadline and the host's timer.
  returned: when O(confirm_within) is set
  type: dict
confirmed:
  description: Whether the update was confirmed over a new connection.
  returned: when O(confirm_within) is set
  type: bool
rolled_back:
  description: The rollback taken (O(state=rolled_back)), or the one a failed health check led to.
  returned: when a rollback was taken
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.livefs.livefs.plugins.module_utils.livefs import (
    COMMON_ARGS,
    fail_on_error,
    run_livefs,
)


def etc_changes(outcome):
    return [p for p in outcome.get('etc', {}).get('paths', []) if p.get('action') in ('added', 'updated', 'removed')]


def would_change(outcome):
    """Whether a dry run's transition changes the running system."""
    return bool(outcome['from'] != outcome['to'] or outcome.get('plan') or etc_changes(outcome))


def usr_paths(outcome):
    return sorted('/usr' + e['path'] for key in ('added', 'replaced', 'removed') for e in outcome.get(key, []))


def diff_of(outcome):
    """The before/after of a transition: commits and the /usr paths it touches."""
    counts = outcome.get('counts', {})
    return {
        'before': {'commit': outcome['from']},
        'after': {
            'commit': outcome['to'],
            'added': counts.get('added_files', 0) + counts.get('added_dirs', 0),
            'replaced': counts.get('replaced_files', 0) + counts.get('replaced_dirs', 0),
            'removed': counts.get('removed_files', 0) + counts.get('removed_dirs', 0),
            'paths': usr_paths(outcome),
            'etc': ['/etc' + p['path'] for p in etc_changes(outcome)],
        },
    }


def live_args(p):
    """livefs apply's arguments for the module's parameters."""
    args = ['apply', '--max-strategy', p['max_strategy'], '--settle', str(p['settle'])]
    if p['target']:
        args += ['--target', p['target']]
    if p['allow_replacement']:
        args.append('--allow-replacement')
    for check in p['checks']:
        args += ['--check', check]
    if not p['rollback']:
        args.append('--no-rollback')
    if p['confirm_within']:
        args += ['--confirm-within', str(p['confirm_within'])]
    return args


def run_changing(module, result, args, nothing):
    """Runs livefs ARGS (--restart, --dry-run as the module's parameters say);
    returns its document, or None when livefs had nothing to do (kind NOTHING),
    which the result then says. Fails the module on an error."""
    if module.params['restart']:
        args.append('--restart')
    if module.check_mode:
        args.append('--dry-run')
    rc, doc, err = run_livefs(module, *args)
    if doc.get('kind') == nothing and 'error' not in doc:
        result.update(changed=False, kind=nothing, msg=doc.get('reason'))
        return None
    fail_on_error(module, rc, doc, err)
    return doc


def transition(module, result):
    p = module.params
    args = live_args(p) if p['state'] == 'live' else ['reset']
    doc = run_changing(module, result, args, 'no_pending')
    if doc is None:
        return
    strategy = doc.get('strategy', {})
    result.update(
        outcome=doc,
        changed=would_change(doc) if module.check_mode else doc['changed'],
        state=doc['state'],
        strategy=strategy,
        needs_reboot=strategy.get('needs', 'live') != 'live',
        soft_reboot_capable=strategy.get('soft_reboot_capable', False),
        needs_restart=doc.get('restarts', {}),
        etc=doc.get('etc', {}).get('paths', []),
    )
    if doc.get('restart'):
        result['restarted'] = doc['restart'].get('actions', [])
    for key in ('health', 'confirm'):
        if doc.get(key):
            result[key] = doc[key]
    if module._diff and result['changed']:
        result['diff'] = diff_of(doc)


def rolled_back(module, result):
    doc = run_changing(module, result, ['rollback'], 'no_rollback')
    if doc is None:
        return
    outcome = doc['outcome']
    result.update(
        rolled_back=doc,
        changed=not module.check_mode or bool(outcome.get('plan') or outcome.get('etc_restored')),
        state=outcome['state'],
        needs_restart=outcome.get('restarts', {}),
    )
    if outcome.get('restart'):
        result['restarted'] = outcome['restart'].get('actions', [])


def confirmed(module, result):
    rc, doc, err = run_livefs(module, 'confirm')
    fail_on_error(module, rc, doc, err)
    result.update(changed=doc['changed'], confirmed=doc['changed'], outcome=doc)


def restarted(module, result):
    args = ['restart'] + (['--dry-run'] if module.check_mode else [])
    rc, doc, err = run_livefs(module, *args)
    fail_on_error(module, rc, doc, err)
    activation = doc['restart']
    result.update(
        outcome=doc,
        changed=bool(activation.get('actions')) or activation.get('daemon_reload', False),
        restarted=activation.get('actions', []),
        needs_restart=doc.get('restarts', {}),
    )


def main():
    argument_spec = dict(
        state=dict(type='str', default='live', choices=['live', 'reset', 'restarted', 'rolled_back', 'confirmed']),
        target=dict(type='str'),
        allow_replacement=dict(type='bool', default=False),
        restart=dict(type='bool', default=False),
        max_strategy=dict(type='str', default='reboot', choices=['live', 'soft-reboot', 'reboot']),
        checks=dict(type='list', elements='str', default=[]),
        settle=dict(type='int', default=10),
        rollback=dict(type='bool', default=True),
        confirm_within=dict(type='int'),
    )
    argument_spec.update(COMMON_ARGS)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    for option in ('target', 'confirm_within'):
        if module.params[option] and module.params['state'] != 'live':
            module.fail_json(msg='%s is only for state=live' % option)
    if module.params['confirm_within'] and module.check_mode:
        module.fail_json(msg='confirm_within cannot be checked: a dry run applies nothing to confirm')
    result = dict(changed=False, needs_reboot=False, soft_reboot_capable=False)
    actions = dict(restarted=restarted, rolled_back=rolled_back, confirmed=confirmed)
    actions.get(module.params['state'], transition)(module, result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
