#!/usr/bin/env python3
"""A checker for hw1: partial credit, one point per expected word in order.

wasijail runs it after each job that names it, in a fresh folder holding
read-only copies of the job's outputs; the job's stdout is its stdin. Its
exit status decides pass (0) or fail, and its last line is the score.
"""
import sys

want = ["hello", "world"]
got = sys.stdin.read().split()
score = sum(1 for w, g in zip(want, got) if w == g) / len(want)
print(f"words: {got}")
print(score)
sys.exit(0 if got == want else 1)
