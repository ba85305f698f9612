"""workers.recovery over fakeredis: re-queue counting, the poison limit, one settlement per run, the sweep
of dead nodes' jobs, jobs popped by a slot that died before starting them, and quarantine of unreadable
job hashes."""

from __future__ import annotations

from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker

from tasks import cpu
from workers import client, defaults, recovery
from workers.recovery import Cut


def start_run(client, queue: Queue, worker_name: str = "n1.slot1") -> tuple[Job, str]:
    """Dequeue the next job and register its run as a slot would (no execution of the function)."""
    worker = SimpleWorker([queue], connection=client, name=worker_name, serializer=JSONSerializer)
    job, _queue = Queue.dequeue_any([queue], None, connection=client, serializer=JSONSerializer)
    execution = worker.prepare_execution(job)
    worker.prepare_job_execution(job)
    return job, execution.id


def test_a_job_whose_node_dies_is_requeued_at_the_front_and_counted_then_failed_as_poison(fake_redis):
    q = Queue("default", connection=fake_redis, serializer=JSONSerializer)
    job = q.enqueue(cpu.sum_squares, 10)
    other = q.enqueue(cpu.sum_squares, 20)
    for death in range(1, defaults.POISON_LIMIT):
        run, execution_id = start_run(fake_redis, q)
        assert run.id == job.id  # re-queued at the front, ahead of `other`
        outcome = recovery.interrupt(fake_redis, job.id, execution_id, f"node n{death} died", Cut.DEATH, "sweeper")
        assert outcome.action == "requeued"
        job.refresh()
        assert job.get_status() == JobStatus.QUEUED and q.job_ids[0] == job.id
        assert job.meta["deaths"] == death and job.meta["requeues"] == death
        assert job.meta["interruptions"][-1] == f"node n{death} died"
        assert q.started_job_registry.get_job_ids(cleanup=False) == []
    _run, execution_id = start_run(fake_redis, q)
    outcome = recovery.interrupt(fake_redis, job.id, execution_id, "node n9 died", Cut.DEATH, "sweeper")
    assert outcome.action == "failed"
    job.refresh()
    assert job.get_status() == JobStatus.FAILED and job.id in q.failed_job_registry.get_job_ids()
    reason = client.failure_reason(job)
    assert f"{defaults.POISON_LIMIT} runs" in reason and "nodes or slots died" in reason, reason
    assert q.job_ids == [other.id]


def test_a_run_is_settled_once(fake_redis):
    q = Queue("default", connection=fake_redis, serializer=JSONSerializer)
    job = q.enqueue(cpu.sum_squares, 10)
    _run, execution_id = start_run(fake_redis, q)
    assert recovery.claim(fake_redis, job.id, execution_id, "n1.slot1")  # the slot writes its result...
    assert recovery.claim(fake_redis, job.id, execution_id, "n1.slot1")  # (again after a Redis error)
    outcome = recovery.interrupt(fake_redis, job.id, execution_id, "node n1 died", Cut.DEATH, "n2")
    assert outcome.action == "skipped"  # ...so no sweeper re-queues it
    assert job.get_status(refresh=True) == JobStatus.STARTED and q.job_ids == []


def test_a_stop_is_never_counted_as_poison(fake_redis):
    q = Queue("default", connection=fake_redis, serializer=JSONSerializer)
    job = q.enqueue(cpu.sum_squares, 10)
    for _ in range(defaults.POISON_LIMIT + 1):
        _run, execution_id = start_run(fake_redis, q)
        assert recovery.interrupt(fake_redis, job.id, execution_id, "grace over", Cut.STOP, "n1").action == "requeued"
    job.refresh()
    assert job.meta["stops"] == defaults.POISON_LIMIT + 1 and "deaths" not in job.meta


def test_the_sweep_requeues_only_runs_of_dead_nodes(fake_redis):
    q = Queue("default", connection=fake_redis, serializer=JSONSerializer)
    dead = q.enqueue(cpu.sum_squares, 1)
    live = q.enqueue(cpu.sum_squares, 2)
    orphan = q.enqueue(cpu.sum_squares, 3)
    stock = q.enqueue(cpu.sum_squares, 4)
    start_run(fake_redis, q, "gone.slot1")
    start_run(fake_redis, q, "alive.slot1")
    start_run(fake_redis, q, "headless.slot1")  # its node died, its slot still finishes its job
    start_run(fake_redis, q, "3f2a9c")  # a stock rq worker: RQ's maintenance is in charge
    fake_redis.set(defaults.NODE_KEY_PREFIX + "alive", "1")
    fake_redis.set(recovery.slot_key("headless.slot1"), "1")
    outcomes = recovery.sweep(fake_redis, ("high", "default"), "alive")
    assert [(o.job_id, o.action) for o in outcomes] == [(dead.id, "requeued")]
    assert (
        "node gone died"
        in Job.fetch(dead.id, connection=fake_redis, serializer=JSONSerializer).meta["interruptions"][0]
    )
    assert sorted(q.started_job_registry.get_job_ids(cleanup=False)) == sorted([live.id, orphan.id, stock.id])
    assert recovery.sweep(fake_redis, ("default",), "alive") == []  # settled: a second sweep does nothing


def test_an_unreadable_job_hash_is_quarantined_with_the_bad_fields_named(fake_redis):
    q = Queue("default", connection=fake_redis, serializer=JSONSerializer)
    job = q.enqueue(cpu.sum_squares, 10)
    fake_redis.hset(job.key, mapping={"status": "bogus", "created_at": "yesterday"})
    try:
        Job.fetch(job.id, connection=fake_redis, serializer=JSONSerializer)
    except ValueError as exc:
        error = exc
    reason = recovery.quarantine(fake_redis, job.id, "default", error)
    assert "status='bogus'" in reason and "created_at='yesterday'" in reason
    readable = Job.fetch(job.id, connection=fake_redis, serializer=JSONSerializer)
    assert readable.get_status() == JobStatus.FAILED and job.id in q.failed_job_registry.get_job_ids()
    assert client.failure_reason(readable) == reason


def test_a_job_popped_by_a_slot_that_died_before_starting_it_is_found_and_requeued_once(fake_redis, monkeypatch):
    q = Queue("default", connection=fake_redis, serializer=JSONSerializer)
    waiting = q.enqueue(cpu.sum_squares, 1)
    lost = q.enqueue(cpu.sum_squares, 2)
    being_started = q.enqueue(cpu.sum_squares, 3)
    elsewhere = Queue("other", connection=fake_redis, serializer=JSONSerializer).enqueue(cpu.sum_squares, 4)
    for job in (lost, being_started, elsewhere):  # popped by slots (BLPOP), none registered yet
        fake_redis.lrem(Queue(job.origin, connection=fake_redis).key, 1, job.id)
    watches = [recovery.LostJobs(), recovery.LostJobs()]  # two live nodes see the death
    for watch in watches:
        watch.note_death()
        assert watch.check(fake_redis, ("high", "default"), "n2") == []  # a scan: candidates only
        assert set(watch.candidates) == {lost.id, being_started.id}  # not `waiting`, not another queue's
    fake_redis.hset(being_started.key, "status", JobStatus.STARTED.value)  # its live slot's next step
    monkeypatch.setattr(recovery, "LOST_CONFIRM_S", 0.0)
    first = watches[0].check(fake_redis, ("high", "default"), "n2")
    assert [(o.job_id, o.action) for o in first] == [(lost.id, "requeued")]
    assert watches[1].check(fake_redis, ("high", "default"), "n3") == []  # back in its queue: once only
    assert q.job_ids == [lost.id, waiting.id]  # at the front
    meta = Job.fetch(lost.id, connection=fake_redis, serializer=JSONSerializer).meta
    assert meta["deaths"] == 1 and "died before it could start" in meta["interruptions"][0]
    assert not watches[0].candidates and not watches[0].scan_due


def test_dead_slots_are_buried_only_when_their_node_is_dead_too(fake_redis):
    q = Queue("default", connection=fake_redis, serializer=JSONSerializer)
    for name in ("gone.slot1", "alive.slot1", "headless.slot1", "3f2a9c"):
        SimpleWorker([q], connection=fake_redis, name=name, serializer=JSONSerializer).register_birth()
    fake_redis.set(defaults.NODE_KEY_PREFIX + "alive", "1")
    fake_redis.set(recovery.slot_key("headless.slot1"), "1")
    assert recovery.bury_dead_slots(fake_redis) == ["gone.slot1"]
    names = {w.name for w in SimpleWorker.all(connection=fake_redis)}
    assert names == {"alive.slot1", "headless.slot1", "3f2a9c"}  # a stock worker is RQ's business
    assert recovery.bury_dead_slots(fake_redis) == []


def test_a_requeue_retried_after_a_redis_error_counts_and_queues_the_run_once(fake_redis):
    q = Queue("default", connection=fake_redis, serializer=JSONSerializer)
    job = q.enqueue(cpu.sum_squares, 10)
    _run, execution_id = start_run(fake_redis, q)
    for _attempt in range(2):  # the same owner again, as `_persist` retries it
        outcome = recovery.interrupt(fake_redis, job.id, execution_id, "node n1 died", Cut.DEATH, "n2")
        assert outcome.action == "requeued"
    job.refresh()
    assert job.meta["deaths"] == 1 and job.meta["requeues"] == 1 and len(job.meta["interruptions"]) == 1
    assert q.job_ids == [job.id]  # queued once: it runs once more, not twice
    fake_redis.lpop(q.key)  # the retry came after the first attempt's counts but before its re-queue
    assert recovery.interrupt(fake_redis, job.id, execution_id, "node n1 died", Cut.DEATH, "n2").action == "requeued"
    assert (
        q.job_ids == [job.id]
        and Job.fetch(job.id, connection=fake_redis, serializer=JSONSerializer).meta["deaths"] == 1
    )
