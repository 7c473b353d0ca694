"""The API's shared rate limit (app_release_rate_limit_points), end to end.

Turned on with playbooks/app.yml (the environment file changes, so the
rolling engine replaces every instance), then two clients on two lab
machines, each a different address behind the load balancers: A sends 2.5
times the limit for a while, alternating between the two load balancers'
own addresses; B sends a quarter of it. A is answered 429 with Retry-After by
every instance through either load balancer and gets within 10 % of the
limit served; B gets no 429.

The last test of the last scenario on the shared lab (after test_deploy.py;
tools/test takes the lab down next): the limit is left on, since no load test
follows - turning it off again would be a second rolling replacement of every
instance, minutes of CI for nothing. Run alone on a lab that other tests use
afterwards, turn it off with `ansible-playbook playbooks/app.yml`.
"""
import base64
import json
import os
import sys
import threading

import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd())
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
sys.path.insert(0, os.path.join(PROJECT, "tests", "support"))
from lab_run import Playbooks, lab_host  # noqa: E402  (tests/support helper)

LIMIT = 20          # requests per client per window
WINDOW_S = 1
SECONDS = 12        # long enough that a window cut at either end stays within the 10 %

# Runs on a lab machine: GET /items/:id at a fixed rate for a while, round
# robin over the load balancers, one keep-alive connection to each, never
# resending. Prints one JSON summary.
CLIENT = r'''
import http.client, json, sys, time
lbs, rate, seconds, item = sys.argv[1].split(","), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
conns = {lb: http.client.HTTPConnection(lb, 80, timeout=5) for lb in lbs}
rows, t0 = [], time.monotonic()
n = int(rate * seconds)
for i in range(n):
    due = t0 + i / rate
    time.sleep(max(0.0, due - time.monotonic()))
    lb = lbs[i % len(lbs)]
    try:
        conns[lb].request("GET", "/items/" + item)
        r = conns[lb].getresponse()
        r.read()
        rows.append([lb, r.status, r.getheader("X-Instance"), r.getheader("Retry-After")])
    except OSError as exc:
        conns[lb].close()
        conns[lb] = http.client.HTTPConnection(lb, 80, timeout=5)
        rows.append([lb, 0, None, repr(exc)])
print(json.dumps(rows))
'''


def on(name):
    return lab_host(INVENTORY, name)


def address(name):
    return RUNNER.get_variables(name)["ansible_host"]


def run_client(host, lbs, rate, item, results, key):
    script = base64.b64encode(CLIENT.encode()).decode()
    out = on(host).check_output(f"echo {script} | base64 -d | python3 - {','.join(lbs)} {rate} {SECONDS} {item}")
    results[key] = json.loads(out)


def test_a_client_over_its_limit_gets_429_everywhere_and_others_do_not():
    run = Playbooks(INVENTORY, PROJECT)
    lbs = [address(name) for name in RUNNER.get_hosts("lb")]
    client_a, client_b = RUNNER.get_hosts("worker")[:2]
    run("playbooks/app.yml", "-e", f"app_release_rate_limit_points={LIMIT}",
        "-e", f"app_release_rate_limit_window_s={WINDOW_S}")
    item = json.loads(on(client_a).check_output(
        f"curl -fsS -X POST -H 'Content-Type: application/json' -d '{{\"name\":\"rate limit\"}}' http://{lbs[0]}/items"))["id"]
    results = {}
    threads = [threading.Thread(target=run_client, args=(client_a, lbs, LIMIT * 2.5, item, results, "a")),
               threading.Thread(target=run_client, args=(client_b, lbs, LIMIT / 4, item, results, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    a, b = results["a"], results["b"]
    served = [row for row in a if row[1] == 200]
    limited = [row for row in a if row[1] == 429]
    print(f"client A: {len(a)} sent, {len(served)} served ({len(served) / SECONDS:.1f}/s for a limit of "
          f"{LIMIT}/{WINDOW_S} s), {len(limited)} answered 429; client B: {len(b)} sent, "
          f"{sum(1 for row in b if row[1] == 429)} answered 429")
    assert len(served) + len(limited) == len(a), [row for row in a if row[1] not in (200, 429)][:5]
    assert abs(len(served) / SECONDS - LIMIT / WINDOW_S) <= 0.1 * LIMIT / WINDOW_S, len(served)
    # Every instance that answered A also refused it, through either load
    # balancer, each time saying when to come back.
    answered = {row[2] for row in a}
    assert len(answered) >= 2 and {row[2] for row in limited} == answered, (answered, {row[2] for row in limited})
    assert {row[0] for row in limited} == set(lbs)
    assert all(row[3] is not None and row[3].isdigit() and 1 <= int(row[3]) <= WINDOW_S for row in limited)
    # B, under the limit, was never refused.
    assert [row[1] for row in b] == [200] * len(b)
