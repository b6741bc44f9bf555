"""TRex STL profile for the `large-config` scenario: established-1k traffic to the
Service under test of the 1,000-Service configuration (`scripts/bench --print-config
large-config` writes it: 1,000 Services x 10 backends, 1,000 loadBalancerSourceRanges on
the one under test; replace the two memif `device:` lines by the real ports).

  start -f stl_large_config.py -m 100% --port 0

Same frames as stl_l4lb.py scenario=established,flows=1000; the difference is only
l4lbd's configuration. Not run against TRex here: checked only with py_compile.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stl_l4lb import L4lbProfile  # noqa: E402


class LargeConfigProfile(L4lbProfile):
    def get_streams(self, direction=0, **kwargs):
        kwargs.update(scenario="established", flows=1000)
        return super().get_streams(direction, **kwargs)


def register():
    return LargeConfigProfile()
