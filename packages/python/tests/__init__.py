"""Tests of pi_guard_verify: python3 -m unittest discover -s packages/python/tests -t packages/python"""
