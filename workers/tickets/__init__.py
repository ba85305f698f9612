"""The chapter's ticket sale (6.5) run for real: a file store with local buyer processes, a Redis store
whose buyers are RQ jobs on worker nodes, a ledger of every sale, and the single-client benchmark.

    store_file   ticket.json + JSONL ledger; buyer processes aligned by a multiprocessing.Barrier
    store_redis  counter + ledger in Redis per sale id; modes naive/host-lock/redis-lock/atomic/watch
    jobs         the registered buyer job functions worker nodes run
    network      enqueue a networked sale's buyer jobs, wait for them, report from the ledger
    engine       what the CLI calls: run a local sale, submit a networked one, report/reset/delete
    bench        one client, sequential attempts/s: naive vs Lua vs WATCH
"""
