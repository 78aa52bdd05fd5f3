"""Unit tests of the plugin's logic, natively: `python3 -m unittest`."""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
import fake_host  # noqa: E402  (installs the host's modules first)
import app  # noqa: E402


class ChannelTest(unittest.TestCase):
    def setUp(self):
        fake_host.reset()

    def test_the_frame_carries_the_prefixed_title(self):
        plugin = app.WitWorld()
        plugin.configure("b", '{"prefix": ">>"}')
        plugin.deliver("b", fake_host.Alert(title="E1 x3 on svc"))
        [(kind, body)] = fake_host.DELIVERIES
        self.assertEqual(kind, "websocket")
        frame = json.loads(body)
        self.assertEqual(frame["title"], ">> E1 x3 on svc")
        self.assertEqual(frame["key"], "E1|svc")


if __name__ == "__main__":
    unittest.main()
