#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) livefs developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: livefs_info
short_description: The live state of an OSTree host, from livefs status
description:
  - Reports C(livefs status --json) of the host, and sets it as the fact C(livefs), so that later plays
    and templates can use the booted, pending and live commits, the state of C(/usr), what a live apply of
    the pending deployment would need (C(strategy)) and what still needs a restart.
version_added: 0.1.0
author: livefs developers (@livefs)
options: {}
extends_documentation_fragment:
  - livefs.livefs.livefs
attributes:
  check_mode:
    description: It changes nothing in any mode.
    support: full
  diff_mode:
    description: Nothing to show.
    support: none
seealso:
  - module: livefs.livefs.livefs
'''

EXAMPLES = r'''
- name: Read the live state
  livefs.livefs.livefs_info:

- name: Hosts whose pending update needs a reboot
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }} needs a {{ ansible_facts.livefs.strategy.needs }}"
  when: ansible_facts.livefs.strategy and ansible_facts.livefs.strategy.needs != 'live'
'''

RETURN = r'''
status:
  description: C(livefs status --json) (see C(docs/schema/status.schema.json) in the livefs sources).
  returned: always
  type: dict
  contains:
    booted:
      description: The booted commit.
      type: dict
    pending:
      description: The pending deployment's commit, if any.
      type: dict
    state:
      description: The live state (C(booted), C(live), C(applying)).
      type: dict
    strategy:
      description: What a live apply of the pending deployment needs.
      type: dict
ansible_facts:
  description: The same, as the fact C(livefs).
  returned: always
  type: dict
  contains:
    livefs:
      description: C(livefs status --json).
      type: dict
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.livefs.livefs.plugins.module_utils.livefs import (
    COMMON_ARGS,
    fail_on_error,
    run_livefs,
)


def main():
    module = AnsibleModule(argument_spec=dict(COMMON_ARGS), supports_check_mode=True)
    rc, doc, err = run_livefs(module, 'status')
    fail_on_error(module, rc, doc, err)
    module.exit_json(changed=False, status=doc, ansible_facts=dict(livefs=doc))


if __name__ == '__main__':
    main()
