"""The chapter's ticket sale (6.5) run for real: a file store with local buyer processes, a Redis store
whose buyers are RQ jobs on worker nodes, a ledger of every sale, and the single-client benchmark.

    records      SaleSpec (what a sale is asked to be, with the limits of every number) and the result records
    local        a local sale: buyer processes on this host, on the file store or the Redis store
    network      a networked sale: enqueue buyer jobs for the worker nodes, follow them; any Redis sale's report
    manage       report / reset / delete a sale, whichever store it lives in
    store_file   ticket.json + its JSONL ledger
    store_redis  counter + ledger + meta in Redis per sale id
    redis_buyer  one buyer of a Redis sale: the start barrier and the purchase of each mode
    node_job     the registered buyer job function worker nodes run
    bench        one client, sequential attempts/s: naive vs Lua vs WATCH

Every engine here takes the Redis it works on (a client, or a `Conn` with the URL buyer processes
rebuild their clients from); only the CLI resolves one.
"""
