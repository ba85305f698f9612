# ruff: noqa: E501 - one text per line reads better than wrapped string pieces
"""What the coverage edge-case experiments teach (English and Chinese) and their claims in Chinese.

Kept apart from `explain.py` and `zh.py`, which merge these dicts in, so that the experiments of
locked_pipe, pool_maxtasks, memory, returncode and contention carry their texts in one place.
"""

from __future__ import annotations

EXPLAIN: dict[str, str] = {
    "locked-pipe": (
        "A Pipe end is one byte stream. A message larger than the pipe's capacity (64 KiB on Linux) is written in "
        "pieces, so two writers' pieces interleave and the reader loses the message boundaries. A Queue is a pipe "
        "too: what makes it safe is a Lock its feeder thread takes around each write. Take the same Lock around "
        "each send_bytes() and a shared Pipe end is safe as well. Order is kept per writer only: items of "
        "different writers arrive interleaved, in no promised order."
    ),
    "pool-maxtasks": (
        "A Pool starts its workers once and hands each one task after another: on the chapter's Pool(4) over 8 "
        "tasks of uneven length, 4 pids run all 8, and a worker that draws short tasks runs more of them. "
        "maxtasksperchild=N retires a worker after N tasks and starts a fresh one (useful against leaks in "
        "long-running workers); the cap on tasks running at once stays the Pool size."
    ),
    "imap-backlog": (
        "imap() does not wait for its consumer: the Pool's task thread keeps feeding the workers and its result "
        "thread stores every finished result in the parent until the consumer asks for it. Consumed as they "
        "come, few results exist at once; a consumer that falls behind holds them all, as map() does. To bound "
        "memory, feed the input in slices (or apply_async with a semaphore) instead of relying on imap."
    ),
    "cow-refcounts": (
        "After fork the child shares every page with the parent until one side writes to it. Reading a bytes "
        "buffer writes nothing, so those pages stay shared (RSS counts them, USS does not). Reading a Python "
        "object is different: taking a reference increments its reference count, a write into the object's "
        "memory, and the whole 4 KiB page holding it is copied. A child that merely iterates over a big list "
        "of objects ends up copying it; gc.freeze() before fork avoids the garbage collector's writes, not "
        "these."
    ),
    "returncode-traps": (
        "returncode is what the child's exit status says: a code the program chose (ls exits 2 on a missing "
        "directory) or, when a signal killed it, minus the signal number (-9 for SIGKILL). Without check=True, "
        "run() raises for neither, so test returncode != 0, not > 0. A shell pipeline reports only its last "
        "command's status: in `false | true` the failure is invisible unless the shell has pipefail."
    ),
    "lock-contention": (
        "An uncontended Lock is a semaphore operation: cheap, but far from free next to a plain update. When "
        "several processes want it at once, each waits for the others' turns and the lock's memory moves "
        "between CPU cores, so every update costs more. Keep critical sections short and few: lock the "
        "read-modify-write, not the whole loop."
    ),
}
"""Why each coverage edge-case experiment behaves as it does (English)."""

EXTRA_CODE: dict[str, tuple[str, ...]] = {
    "locked-pipe": ("_pipe_writer", "_queue_writer"),
    "pool-maxtasks": ("_pool_run", "_task"),
    "imap-backlog": ("_result",),
    "cow-refcounts": ("_cow_child", "_cow_stages"),
    "returncode-traps": ("_run",),
    "lock-contention": ("_bump", "_in_children"),
}
"""Module-level names shown after each experiment's run function."""

EXPLAIN_ZH: dict[str, str] = {
    "locked-pipe": (
        "Pipe 的一端就是一条字节流。超过管道容量（Linux 上为 64 KiB）的消息会被分成多次写入，两个写者的片段因此交错，"
        "读端就分不清消息边界了。Queue 底层也是管道，它之所以安全，是因为后台的 feeder 线程每次写入前都会获取一把 Lock。"
        "给每次 send_bytes() 套上同一把 Lock，多个进程共用一个 Pipe 端也一样安全。顺序只在单个写者内部保证："
        "不同写者的数据交错到达，彼此之间没有先后承诺。"
    ),
    "pool-maxtasks": (
        "进程池只在开始时创建工作进程，之后把任务一个接一个交给它们：教材的 Pool(4) 处理 8 个长短不一的任务，"
        "4 个 PID 跑完全部 8 个，分到短任务的进程会多跑几个。maxtasksperchild=N 让工作进程完成 N 个任务后退出并换上新进程"
        "（可防止长期运行的进程内存泄漏）；同时运行的任务数仍以进程池大小为上限。"
    ),
    "imap-backlog": (
        "imap() 不会等待消费者：进程池的任务线程持续给工作进程派活，结果线程把每个完成的结果存放在父进程中，直到消费者来取。"
        "边产生边消费时，同一时刻只有少量结果；消费者一旦落后，就会像 map() 一样把所有结果都留在内存里。"
        "要限制内存，应分批提交输入（或用 apply_async 加信号量），而不是指望 imap。"
    ),
    "cow-refcounts": (
        "fork 之后，子进程与父进程共享所有内存页，直到某一方写入。读取 bytes 缓冲区不会写内存，这些页一直共享"
        "（RSS 会把它们算进去，USS 不会）。读取 Python 对象则不同：引用对象会增加它的引用计数，这是对对象内存的一次写入，"
        "于是该对象所在的整个 4 KiB 页被复制。子进程只是遍历一个很大的对象列表，最终也会把它复制一遍；"
        "fork 前调用 gc.freeze() 只能避免垃圾回收器的写入，避免不了引用计数的写入。"
    ),
    "returncode-traps": (
        "returncode 反映子进程的退出状态：要么是程序自己给出的退出码（ls 找不到目录时返回 2），要么在被信号杀死时为负的信号编号"
        "（SIGKILL 为 -9）。不加 check=True 时，run() 对这两种情况都不抛异常，所以要判断 returncode != 0，而不是 > 0。"
        "shell 管道只报告最后一个命令的状态：`false | true` 中的失败看不出来，除非 shell 开启了 pipefail。"
    ),
    "lock-contention": (
        "无人竞争时，获取和释放 Lock 只是一次信号量操作：不算贵，但与一次普通更新相比绝非免费。多个进程同时争用时，"
        "每个进程都要等别人用完，锁所在的内存还要在 CPU 核心之间来回传递，于是每次更新都更慢。"
        "临界区要短而少：只锁住“读-改-写”这一步，而不是整个循环。"
    ),
}
"""Why each coverage edge-case experiment behaves as it does (Chinese, written for this lab)."""

CLAIMS_ZH: dict[str, str] = {
    "one Lock held around every send_bytes() makes a Pipe end safe for several writers (what a Queue does inside)": "每次 send_bytes() 都在同一把 Lock 内进行，多个写者共用一个 Pipe 端也安全（Queue 内部就是这样做的）",
    "with many writers, a Queue keeps each writer's items in the order it put them, interleaved between writers": "多个写者时，Queue 保持每个写者各自的放入顺序，不同写者之间交错到达",
    "with maxtasksperchild=1 every task gets a new worker process, and the Pool still caps concurrency": "maxtasksperchild=1 时每个任务都由新的工作进程执行，进程池仍然限制并发数",
    "imap() saves memory only while the consumer keeps up: finished results wait in the parent": "只有消费者跟得上时 imap() 才省内存：已完成的结果会堆积在父进程中",
    "a forked child that only reads a large bytes buffer keeps sharing it: its own memory does not grow": "fork 出的子进程只读取一个大的 bytes 缓冲区时，仍与父进程共享它：自身内存不增长",
    "a forked child that only reads many Python objects still copies their pages (reference counts)": "fork 出的子进程即使只读取大量 Python 对象，也会复制它们所在的页（引用计数）",
    "a child killed by a signal has a negative returncode (-signal number); without check nothing is raised": "被信号杀死的子进程 returncode 为负的信号编号；不加 check 时不会抛出异常",
    "a shell pipeline's returncode is its last command's: a failure earlier in the pipe goes unseen": "shell 管道的 returncode 是最后一个命令的：前面命令的失败会被忽略",
    "contention makes a Lock dearer: processes sharing one Lock pay more per update than one process alone": "竞争让锁更贵：多个进程共用一把锁时，每次更新的代价高于单个进程独占",
}  # fmt: skip
"""The coverage edge-case claims in Chinese (keyed by their English text)."""

DESCRIPTIONS_ZH: dict[str, str] = {
    "locked-pipe": "多个写者同时写一个 Queue、一个 Pipe 端、以及每次发送都加锁的 Pipe 端：读端收到了什么",
    "pool-maxtasks": "教材的 Pool(4) 跑 8 个长短不一的任务：哪个 pid 跑了哪些；再看 maxtasksperchild=1",
    "imap-backlog": "map()、边到边取的 imap()、以及消费者落后时的 imap()：父进程的内存峰值",
    "cow-refcounts": "fork 出的子进程自己的内存（USS）：刚 fork 后、读大缓冲区后、读大量 Python 对象后",
    "returncode-traps": "手动检查返回码：教材的 ls、被信号杀死的子进程、shell 管道中间的失败",
    "lock-contention": "共享计数器每次更新的纳秒数：不加锁、单独一把锁、多个进程同时争一把锁",
}
