"""A small client of the lab's Prometheus and Alertmanager HTTP APIs, for the Molecule tests.

Only the standard library: the tests query the monitoring host directly over
the lab bridge (its private address), as an operator's browser would.
"""
import json
import time
import urllib.parse
import urllib.request


class Prometheus:
    def __init__(self, address, port=9090, alertmanager_port=9093):
        self.base = "http://%s:%d" % (address, port)
        self.alertmanager = "http://%s:%d" % (address, alertmanager_port)

    def _get(self, url, timeout=10):
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = json.load(resp)
        # Prometheus wraps its answers in {"status", "data"}; Alertmanager's v2
        # API answers with the bare list.
        if isinstance(body, dict) and body.get("status", "success") != "success":
            raise AssertionError("%s: %s" % (url, body))
        return body

    def api(self, path, **params):
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        return self._get(self.base + "/api/v1/" + path + query)["data"]

    def query(self, expr):
        """Instant vector: a list of {"metric": {...}, "value": [t, "v"]}."""
        return self.api("query", query=expr)["result"]

    def value(self, expr):
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def targets(self, job):
        """Active targets of a job: [{"instance", "health", "labels"}...]."""
        return [{"instance": t["labels"]["instance"], "health": t["health"], "labels": t["labels"]}
                for t in self.api("targets", state="active")["activeTargets"] if t["labels"].get("job") == job]

    def firing(self):
        """Firing alerts: [{"name", "labels", "activeAt"}...]."""
        return [{"name": a["labels"]["alertname"], "labels": a["labels"], "activeAt": a.get("activeAt")}
                for a in self.api("alerts")["alerts"] if a["state"] == "firing"]

    def alertmanager_alerts(self):
        return self._get(self.alertmanager + "/api/v2/alerts")

    def wait(self, predicate, timeout, interval=1.0):
        """Poll predicate() until it returns something true; (value, seconds waited) or (None, timeout)."""
        start = time.monotonic()
        while True:
            value = predicate()
            if value:
                return value, time.monotonic() - start
            if time.monotonic() - start > timeout:
                return None, time.monotonic() - start
            time.sleep(interval)
