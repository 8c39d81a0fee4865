"""The redis URL forms (dialer/redisconn.py), the settings that check them, and where RQ's queues go."""

from __future__ import annotations

import pytest
import redis

from dialer import jobs, redisconn
from dialer.config import ConfigError, load_config
from dialer.redisconn import ClusterTarget, RedisURLError, parse_cluster_url


def test_cluster_url_names_the_seed_nodes_and_credentials() -> None:
    assert parse_cluster_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7001") == ClusterTarget(
        (("10.0.0.1", 7000), ("10.0.0.2", 7001)), None, None, False)
    assert parse_cluster_url("rediss+cluster://app:s%40cret@h:7000/0") == ClusterTarget(
        (("h", 7000),), "app", "s@cret", True)
    assert parse_cluster_url("redis+cluster://:pw@[::1]:7000/") == ClusterTarget((("::1", 7000),), None, "pw", False)


@pytest.mark.parametrize(("url", "problem"), [
    ("redis+cluster://h:7000/1", "only database 0"),
    ("redis+cluster://h:7000?read_from_replicas=1", r"no \?options"),
    ("redis+cluster://h", "expected host:port"),
    ("redis+cluster://h:0", "expected host:port"),
    ("redis+cluster://h:7000,", "expected host:port"),
    ("redis+cluster://:7000", "expected host:port"),
    ("cluster://h:7000", "expected redis://"),
    ("http://h:7000", "expected redis://"),
])
def test_nonsense_is_refused_with_the_reason(url: str, problem: str) -> None:
    with pytest.raises(RedisURLError, match=problem):
        redisconn.check_url(url)


def test_plain_urls_keep_their_redis_py_forms(redis_url: str) -> None:
    client = redisconn.connect(redis_url)
    assert type(client) is redis.Redis and client.ping() and not redisconn.is_cluster(client)
    for url in ("redis://h:6379/2", "rediss://h:6380/0", "unix:///run/redis.sock?db=1"):
        redisconn.check_url(url)
        assert not redisconn.is_cluster_url(url)


def test_settings_require_a_plain_jobs_redis_beside_a_cluster() -> None:
    with pytest.raises(ConfigError, match=r"redis\.jobs_url is required"):
        load_config(env={"DIALER_REDIS_URL": "redis+cluster://h:7000"})
    with pytest.raises(ConfigError, match="RQ does not run on a Redis Cluster"):
        load_config(env={"DIALER_REDIS_URL": "redis+cluster://h:7000", "DIALER_REDIS_JOBS_URL": "redis+cluster://h:1"})
    with pytest.raises(ConfigError, match=r"setting redis\.url: a Redis Cluster has only database 0"):
        load_config(env={"DIALER_REDIS_URL": "redis+cluster://h:7000/3", "DIALER_REDIS_JOBS_URL": "redis://j:1/0"})
    config = load_config(env={"DIALER_REDIS_URL": "redis+cluster://h:7000", "DIALER_REDIS_JOBS_URL": "redis://j:1/0"})
    assert config.jobs_url == "redis://j:1/0"
    assert load_config(env={"DIALER_REDIS_URL": "redis://h:1/0"}).jobs_url == "redis://h:1/0"  # one Redis: same


def test_rq_queues_follow_redis_jobs_url(redis_url: str, redis_factory) -> None:
    other = redis_factory.start()
    data = redisconn.connect(redis_url)
    try:
        jobs.configure(redis_url, redis_url)  # one Redis: queues beside the data, as before
        assert jobs.jobs_connection(data) is data
        jobs.configure(redis_url, other.url)  # queues on their own Redis
        queue = jobs.get_queue(data, jobs.EXPORTS)
        queue.enqueue("builtins.print", "x")
        assert redisconn.connect(other.url).exists(f"rq:queue:{jobs.EXPORTS}")
        assert not data.exists(f"rq:queue:{jobs.EXPORTS}")
    finally:
        jobs.configure("", "")
        data.close()
