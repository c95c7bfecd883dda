#!/usr/bin/env python3
"""Prints how often the functions whose names contain the given substrings were called, from a callgrind dump.

    python3 bench/callgrind_calls.py callgrind.out.X.2 'ReactorState::execute' ...

Sums the calls= lines of every caller (callgrind's format: "cfn=(id) name" then "calls=COUNT ...").
"""
import re
import sys


def calls(path):
    names, totals, cfn = {}, {}, None
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("cfn="):
                m = re.match(r"cfn=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
                if m:
                    if m.group(2):
                        names[m.group(1)] = m.group(2)
                    cfn = names.get(m.group(1))
            elif line.startswith("fn="):
                m = re.match(r"fn=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
                if m and m.group(2):
                    names[m.group(1)] = m.group(2)
            elif line.startswith("calls=") and cfn:
                totals[cfn] = totals.get(cfn, 0) + int(line.split()[0][6:])
    return totals


if __name__ == "__main__":
    t = calls(sys.argv[1])
    for want in sys.argv[2:]:
        print(sum(v for k, v in t.items() if want in k), want)
