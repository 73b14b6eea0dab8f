"""The injected-bug list of tools/inject_bugs.py still applies to the code it names."""

import os

from tools import inject_bugs


def test_every_injected_bug_still_edits_exactly_one_place():
  stale = {bug.name: why for bug in inject_bugs.BUGS if (why := inject_bugs.check_anchor(bug))}
  assert not stale, "update tools/inject_bugs.py where the code moved"
  assert len({bug.name for bug in inject_bugs.BUGS}) == len(inject_bugs.BUGS) >= 10
  for bug in inject_bugs.BUGS:
    assert bug.old != bug.new
    for test in bug.tests:
      assert os.path.isfile(os.path.join(inject_bugs.REPO, test.split("::")[0])), test
