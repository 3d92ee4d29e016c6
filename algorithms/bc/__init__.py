"""Behavior cloning (RLlib's BC) on genlab's expert demonstrations: the baseline every GAIL result sits beside."""
