"""Unit tests of the plugin's logic, natively: `python3 -m unittest`."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
import fake_host  # noqa: E402  (installs the host's modules first)
import app  # noqa: E402


class RouterTest(unittest.TestCase):
    def test_low_alerts_go_to_quiet_channels_only(self):
        plugin = app.WitWorld()
        plugin.configure("b", '{"quiet": ["websocket"]}')
        channels = ["websocket", "email"]
        low = fake_host.Alert(severity=fake_host.Severity.LOW)
        high = fake_host.Alert(severity=fake_host.Severity.HIGH)
        self.assertEqual(plugin.route("b", low, channels), ["websocket"])
        self.assertEqual(plugin.route("b", high, channels), channels)
        with self.assertRaisesRegex(fake_host.Err, "unknown key"):
            app.settings('{"loud": []}')


if __name__ == "__main__":
    unittest.main()
