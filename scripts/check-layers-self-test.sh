#!/bin/sh
# check-layers.py must catch a wrong-way include, a cycle, a missing header and a folder without rules.
exec "$(dirname "$0")/check-layers.py" --self-test
