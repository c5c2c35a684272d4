# -*- coding: utf-8 -*-
# Copyright (c) livefs developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The options every livefs module takes (module_utils/livefs.py COMMON_ARGS).
    DOCUMENTATION = r'''
options:
  lock_timeout:
    description:
      - Seconds to wait for another livefs on the host to finish before failing with kind C(busy).
    type: int
    default: 60
  root:
    description:
      - The running system's root.
    type: path
    default: /
  sysroot:
    description:
      - The physical root holding C(ostree/) (default O(root)C(/sysroot)).
    type: path
  executable:
    description:
      - The livefs binary (default C(livefs) on the PATH).
    type: path
'''
