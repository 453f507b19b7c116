"""Two `magdi generate` processes on the same endpoints split their quotas instead of each taking all.

Every running job registers a `:QuotaShare` per rate-limited endpoint (renewed with its lease) and
sizes its token buckets at quota / live shares; the shares go when the job ends.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from generator_helpers import MAGDI, count_responses, neo4j_subprocess_env, running, wait_for, write_panel

from magdi.panel import Limits
from magdi.store.graph_store import GraphStore
from magdi.store.quota import QuotaShares, endpoint_id
from services.generator.limits import EndpointLimiter


def shares(store: GraphStore) -> dict[str, int]:
    rows = store.driver.execute_query("MATCH (s:QuotaShare) WHERE s.until > datetime() "
                                      "RETURN s.endpoint AS e, count(*) AS n").records
    return {r["e"]: r["n"] for r in rows}


def test_a_share_sizes_the_buckets_at_a_fraction_of_the_quota() -> None:
    async def main() -> None:
        limiter = EndpointLimiter(Limits(rpm=600, tpm=60_000))
        whole = (limiter.requests.rate, limiter.tokens.rate)
        limiter.share(2)
        assert limiter.requests.rate < whole[0] / 1.9 and limiter.tokens.rate < whole[1] / 1.9
        limiter.share(1)
        assert (limiter.requests.rate, limiter.tokens.rate) == whole

    asyncio.run(main())


def test_shares_count_live_holders_and_expire(store: GraphStore) -> None:
    quota = QuotaShares(store)
    a, b = endpoint_id("http://x/v1", "m1", "KEY"), endpoint_id("http://x/v1", "m2", "KEY")
    assert quota.renew("w1", [a, b], lease_s=30) == {a: 1, b: 1}
    assert quota.renew("w2", [a], lease_s=2) == {a: 2}
    assert quota.renew("w1", [a, b], lease_s=30) == {a: 2, b: 1}  # renewing adds no second share
    time.sleep(2.5)
    assert quota.renew("w1", [a], lease_s=30) == {a: 1}  # w2 died without releasing: its share expired
    assert quota.release("w1") == 2 and shares(store) == {}


def test_two_jobs_on_one_endpoint_share_its_quota(store: GraphStore, neo4j_env, start_panel,  # noqa: ANN001
                                                  gsm8k: dict[str, Path], tmp_path: Path) -> None:
    panel = start_panel(latency_s=0.3)
    panel_file = write_panel(tmp_path / "panel.yaml", panel.base_url, limits={"rpm": 600})
    env = neo4j_subprocess_env()

    def cmd(name: str, offset: int) -> list[str]:
        return [MAGDI, "-v", "generate", "--panel", str(panel_file), "--dataset", "gsm8k",
                "--data", str(gsm8k["test"]), "--limit", "6", "--offset", str(offset), "--job", name,
                "--concurrency", "1", "--no-progress"]

    logs = [tmp_path / "one.log", tmp_path / "two.log"]
    with running(cmd("share-one", 300), env, logs[0]) as one, running(cmd("share-two", 320), env, logs[1]) as two:
        def both_writing() -> bool:
            if one.poll() is not None or two.poll() is not None:
                return True  # checked below
            return all(count_responses(store.driver, f"job-share-{n}") > 0 for n in ("one", "two"))

        wait_for(both_writing, 120, "both jobs to write")
        assert one.poll() is None and two.poll() is None, "a job ended before both ran"
        live = shares(store)
        assert sorted(live.values()) == [2, 2, 2], live  # three models, two holders each
        one.wait(timeout=180)
        two.wait(timeout=180)
    assert one.returncode == 0 and two.returncode == 0, logs[0].read_text()[-2000:] + logs[1].read_text()[-2000:]
    said = logs[0].read_text() + logs[1].read_text()
    assert "2 process(es) share its quota; this one takes 1/2" in said, said[-3000:]
    assert shares(store) == {}, "both jobs released their shares"
