"""Unit tests of the plugin's logic, natively: `python3 -m unittest`."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
import fake_host  # noqa: E402  (installs the host's modules first)
import app  # noqa: E402


class AggregatorTest(unittest.TestCase):
    def setUp(self):
        fake_host.reset()

    def test_config_defaults_and_errors(self):
        self.assertEqual(app.settings("{}"), (3, 60_000))
        self.assertEqual(app.settings('{"window": "5m"}'), (3, 300_000))
        with self.assertRaisesRegex(fake_host.Err, "threshold"):
            app.settings('{"threshold": 0}')
        with self.assertRaisesRegex(fake_host.Err, "unknown key"):
            app.settings('{"treshold": 2}')

    def test_alerts_on_the_threshold_th_event_within_the_window(self):
        plugin = app.WitWorld()
        plugin.configure("b", '{"threshold": 2, "window": "1m"}')
        first = fake_host.ErrorEvent(error_code="E1", received_at=1_000)
        second = fake_host.ErrorEvent(error_code="E1", received_at=2_000)
        other = fake_host.ErrorEvent(error_code="E2", received_at=2_500)
        self.assertEqual(plugin.aggregate("b", [first]), [])
        alerts = plugin.aggregate("b", [second, other])
        self.assertEqual([(a.key, a.count) for a in alerts], [("E1|svc", 2)])
        self.assertEqual(len(fake_host.LOGS), 1)


if __name__ == "__main__":
    unittest.main()
