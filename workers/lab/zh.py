# ruff: noqa: E501 - one translation per line reads better than wrapped string pieces
"""Chinese for `mplab lab --lang zh`: verdicts, headings, claims and explanations (the chapter's readers read
Chinese). Evidence lines carry this run's numbers and stay in English. A text missing here falls back to
English, and a test keeps every claim and explanation covered.
"""

from __future__ import annotations

from workers.lab import coverage_text

VERDICTS: dict[str, str] = {
    "holds": "成立",
    "wrong": "不成立",
    "outdated": "已过时",
    "too-close": "难分高下",
    "not-measured": "本机未测",
}

UI: dict[str, str] = {
    "What happened": "过程",
    "Measured": "测量值",
    "Claims": "论断",
    "claim": "论断",
    "verdict": "结论",
    "evidence": "依据",
    "edge case:": "边界情况：",
    "Why": "原因",
    "Code": "代码",
    "Parameters": "参数",
    "Experiments": "实验",
    "Verdicts per chapter section": "按章节统计的结论",
    "experiment": "实验",
    "seconds": "秒",
    "all": "全部",
    "failed": "失败",
    "verdicts from": "条结论，来自",
    "of": "/",
    "experiments in": "个实验，用时",
}

EXPLAIN: dict[str, str] = {
    "identity": (
        "每个进程都有自己的 PID，os.getppid() 返回它的父进程。用 fork 或 spawn 创建的子进程，操作系统意义上的父进程就是"
        "创建它的进程；而 forkserver 模式下，真正执行 fork 的是 fork server，所以子进程看到的父进程是它。"
        "因此与“父子关系”有关的实验在可能时改用 fork，并在输出中说明。"
    ),
    "states": (
        "教材的三态模型对应 Linux 的状态：就绪和运行都显示为 R（可运行：正在某个 CPU 上，或在等 CPU），阻塞显示为 S"
        "（在 recv() 之类的系统调用里睡眠）。CPU 密集的子进程比核心多时，每个只能分到不足一个核心，其余时间处于就绪。"
        "Linux 还有 T（被 SIGSTOP 暂停）和 Z（僵尸，见 4.2），三态图里没有它们。"
    ),
    "scheduling": (
        "几种算法在同一组作业上模拟，每次切换付出相同的代价。FCFS 让短作业排在长作业后面（护航效应）；SJF 平均等待最短，"
        "但长作业可能饿死；RR 让每个作业都很快得到响应，代价是大量切换；MFQ 先给每个作业一个短时间片（像 RR 一样响应快），"
        "再把用完时间片的长作业降级到更长的时间片（切换更少），而且不需要预先知道运行时间。监听 high,default,low 的 RQ "
        "worker 是严格的多级队列：没有反馈，也不抢占。"
    ),
    "orphan": (
        "父进程先退出时，内核把它的子进程交给最近的、标记为“子进程收割者”（prctl PR_SET_CHILD_SUBREAPER）的祖先，"
        "没有的话交给 PID 1。桌面上的 systemd 用户会话就是这样的收割者，这正是 4.1.2 的提示。收养者会在孤儿退出时 wait() "
        "它，所以孤儿留下的僵尸只存在到收养者注意到为止。"
    ),
    "zombie": (
        "子进程结束后，它在进程表里的条目（退出状态、PID）一直保留到父进程 wait() 它为止，这就是僵尸，已经不占内存。"
        "join() 内部调用 waitpid()。multiprocessing 每次启动新的 Process 或调用 active_children() 时也会顺便回收已结束的"
        "子进程。教材的 managed_processes() 先带超时 join，再 terminate() 并再次 join：对会被 SIGTERM 结束的子进程没问题；"
        "忽略 SIGTERM 的子进程会让最后那次 join() 永远等下去（应补上 kill()）。"
    ),
    "daemon": (
        "daemon=True 是 multiprocessing 的标志，不是 Unix 守护进程：父进程退出时会 terminate() 守护子进程，并 join() 其他"
        "子进程。守护子进程不能再创建 Process（它被终止时会把它们变成孤儿），但它仍与父进程同一个会话、同一个终端；真正的"
        " Unix 守护进程要用 setsid() 脱离终端。"
    ),
    "fork": (
        "fork() 复制调用它的进程：父进程得到子进程的 PID，子进程得到 0，再用 getppid() 得知父进程。内存按写时复制共享，"
        "所以 fork 很快，子进程独占的内存（USS）只随它写过的页增长。fork 只复制调用它的那个线程：如果此刻别的线程正持有某把锁"
        "（logging、malloc、import 里的锁），子进程里这把锁就永远是锁着的。所以 Python 3.12 在有线程的进程 fork 时发出警告，"
        "Python 3.14 在 Linux 上把默认启动方式改成了 forkserver：fork server 是一个干净的单线程进程。"
    ),
    "process-api": (
        "start() 创建进程并在其中执行 run()；自己直接调用 run() 只是普通的函数调用。参数错误在子进程里才暴露，start() 不会报错。"
        "terminate() 发送 SIGTERM：普通子进程以退出码 -15 结束，但子进程可以忽略或处理 SIGTERM，而 kill()（SIGKILL）无法忽略。"
        "terminate() 有风险：持有 Lock 时被终止的子进程永远不会释放它，正在向 Queue 写数据时被终止可能让队列内部的管道只写了一半"
        "（文档警告队列可能因此损坏）。应通过哨兵或 Event 通知子进程自行退出，terminate() 只作最后手段。在 spawn 和 forkserver "
        "下，目标函数和参数都要被 pickle：lambda、局部函数、到其他服务的连接都无法传过去。"
    ),
    "subclass": (
        "Process 子类的 run() 在子进程里、在对象的副本上执行（spawn/forkserver 下是 pickle 出来的副本，fork 下是复制的内存）："
        "它在那里设置的属性永远回不到父进程的对象上。结果要通过 Queue、Pipe 或共享内存送回。"
    ),
    "start-methods": (
        "fork 复制父进程；spawn 启动一个全新的解释器，重新导入主模块再反序列化目标函数；forkserver 从一个干净的服务进程 fork "
        "出子进程。重新导入主模块，正是 spawn 需要 `if __name__ == '__main__':` 的原因：没有它，导入时又会启动进程，"
        "multiprocessing 会以 RuntimeError 拒绝（“An attempt has been made to start a new process before the current "
        "process has finished its bootstrapping phase……”，并提示使用 if __name__ == '__main__': freeze_support()）。"
        "发给 spawn/forkserver 子进程的一切都必须能被 pickle：模块级函数可以，lambda、嵌套函数不行。macOS 从 3.8 起默认 "
        "spawn，Linux 从 3.14 起默认 forkserver。"
    ),
    "isolation": (
        "每个子进程改的是自己那份全局变量（fork 下写时复制，spawn 下重新导入），父进程看到的仍是 100。只有共享内存"
        "（Value/Array、shared_memory）或消息才能跨进程改变数据。"
    ),
    "queue": (
        "Queue 由管道、一个后台 feeder 线程和一把锁组成：对每个生产者保持先进先出，多生产者多消费者安全，可用 maxsize 限长。"
        "哨兵数量要和消费者对上：教材“每个生产者一个 END”的做法在它自己均匀的 3+3 设置下可行，但消费者遇到第一个 END 就停，"
        "较长的生产者剩下的数据可能没人取；在生产者都结束后给每个消费者发一个哨兵才精确。往 Queue 里放过数据的进程，要等 "
        "feeder 线程把数据写完才会退出：数据还没被取走就去 join 它会死锁（先 get，再 join）。"
    ),
    "pipe": (
        "Pipe() 是一对 socket（双工）或一个 os.pipe（duplex=False）：字节流，所以消息按发送顺序到达。只有当发送端的所有副本"
        "都关闭（包括父进程手里那份）时，接收方才会得到 EOFError。它没有锁：两个进程在同一端写大消息，字节会交错。"
    ),
    "queue-vs-pipe": (
        "Pipe 的 send() 是一次 pickle 加一次写；Queue 的 put() 把对象交给 feeder 线程，由它在锁保护下 pickle 并写入，所以每条"
        "消息成本更高，换来多生产者安全和 maxsize。Pipe 也有缓冲（在内核里、按字节计），只是不能按消息条数设上限。"
    ),
    "lock": (
        "多个进程对同一个文件做“读-改-写”会丢失更新：两个买家读到同样的余票，都卖出了。用 multiprocessing.Lock 把整个"
        "“读-检查-写”包起来就成了原子操作；`mplab tickets local` 的账本记录了每一笔销售。"
    ),
    "ipc-table": (
        "每种机制都用同样的数据、按轮次交替测量，教材里的形容词变成带离散范围的数字。只有 Value/Array 是共享内存；Queue、"
        "Pipe、Manager 和 socket 都要 pickle 并复制。Manager 的每次访问都由它的服务进程应答，所以最慢。Redis over TCP 展示"
        "网络带来的额外开销。"
    ),
    "pool-methods": (
        "map 阻塞并保持输入顺序；map_async 立即返回；apply 执行单个任务；apply_async 可带回调，回调在父进程的结果处理线程里运行；"
        "imap 按输入顺序、边算边给出结果；imap_unordered 按完成顺序给出；starmap 会拆开参数元组。"
    ),
    "pool-vs-process": (
        "进程池只在开始时创建一次工作进程并重复使用；每个任务一个 Process 则每次都要付创建的代价。批次多、任务小时进程池胜出；"
        "只有一批较重的任务时，进程池的准备和任务分发可能比它省下的还多。"
    ),
    "subprocess": (
        "run() 等待并收集输出；Popen 可以边运行边读。bufsize=1 只是父进程这一侧的行缓冲：子进程必须自己 flush（教材的子进程"
        "就这么做了）或用 -u 运行。超时后 kill() 只结束子进程本身；它再启动的孙进程会存活，并可能一直占着输出管道，所以这类"
        "命令应放在新会话里启动，超时时用 os.killpg 结束整个进程组。"
    ),
    "many-writers": (
        "Queue 的 put() 在锁的保护下把每条消息完整写入管道，多个写者同时写也不会交错；同一个 Pipe 端口没有锁，多个进程写大消息时"
        "字节交错，接收方读到的是错乱的数据，甚至整个流被破坏。"
    ),
    "lock-cost": (
        "value += 1 是“读、加、写”三步，另一个进程可以插在中间，于是更新丢失。加锁后每次更新都算数，但每次加解锁都要付出时间，"
        "这就是表中 Lock 性能“中”的含义。"
    ),
    "pool-reuse": (
        "进程池的大小就是同时运行任务数的上限；任务一个接一个地交给已有的工作进程，不会为每个任务新建进程。"
    ),
    "imap-memory": (
        "map 先把整个输入变成列表，并在返回前攒齐所有结果；imap 边算边交出结果，逐个处理时父进程只需要保存少量结果，"
        "所以数据量大时内存占用低得多。"
    ),
    "many-zombies": (
        "僵尸不占内存，但每个都占着一个 PID 和进程表项，并计入该用户的进程数上限（RLIMIT_NPROC）。父进程一直不回收，"
        "僵尸越积越多，最终 fork() 会因为没有可用的进程名额而失败。root 不受 RLIMIT_NPROC 限制。"
    ),
    "sigchld": (
        "子进程结束时内核向父进程发送 SIGCHLD。父进程可以在处理函数里循环调用 waitpid(-1, WNOHANG) 回收（几个子进程同时结束时"
        "信号会合并成一个）；把 SIGCHLD 设为 SIG_IGN 则由内核直接回收，不产生僵尸，但父进程也拿不到退出状态了。"
    ),
}
"""Why each experiment behaves as it does, in Chinese (written for this lab, not translated line by line)."""

CLAIMS: dict[str, str] = {
    "fork() returns the child's PID in the parent and 0 in the child": "fork() 在父进程中返回子进程的 PID，在子进程中返回 0",
    "in the child, fork() returns the parent's PID, 'fixed as 0' (5.1.1's wording)": "子进程中 fork() 返回父进程的 PID，“固定为 0”（5.1.1 的说法）",
    "the child's change to w does not affect the parent": "子进程修改 w 不影响父进程",
    "without wait()/waitpid() the forked child becomes a zombie": "fork 后不 wait()/waitpid()，子进程会变成僵尸",
    "Windows has no os.fork": "Windows 没有 os.fork",
    "join(timeout) waits at most timeout seconds": "join(timeout) 最多等待 timeout 秒",
    "terminate() forcibly ends the child": "terminate() 强制终止子进程",
    "terminate() also ends a child that ignores SIGTERM": "terminate() 也能终止忽略 SIGTERM 的子进程",
    "start() runs run() in the new process; run() itself is an ordinary call": "start() 在新进程中执行 run()；直接调用 run() 只是普通调用",
    "args=('张三',) fails: missing age": "args=('张三',) 会因缺少 age 而报错",
    "kwargs {'nam': ...} fails with \"unexpected keyword argument 'nam'\"": "kwargs 写成 {'nam': ...} 会报 “unexpected keyword argument 'nam'”",
    "kwargs complete or override the positional args": "kwargs 可以补充或覆盖位置参数",
    "fork is fast thanks to copy-on-write": "得益于写时复制，fork 很快",
    "fork uses a lot of memory (内存使用量较大), even with copy-on-write": "即使有写时复制，fork 的内存使用量也较大",
    "a daemonic child ends automatically when the main process's code ends": "主进程代码结束时，守护子进程自动结束",
    "a normal child keeps running after the main process's code ends, until its task is done (table 4.3.3)": "主进程代码结束后，普通子进程继续运行直到任务完成（4.3.3 表）",
    "a daemonic process may not create child processes": "守护进程内不允许再创建子进程",
    "daemon must be set before start()": "daemon 必须在 start() 之前设置",
    "a daemon runs in the background, detached from the terminal": "守护进程在后台运行，与终端无关联",
    "every process has its own unique PID": "每个进程都有唯一的 PID",
    "a child sees its creator's PID via os.getppid(), and the parent sees the child's via Process.pid": "子进程用 os.getppid() 看到创建者的 PID，父进程用 Process.pid 看到子进程的 PID",
    "a process waiting for an event is Blocked and gets no CPU": "等待事件的进程处于阻塞状态，不占用 CPU",
    "Ready is distinct from Running: a runnable process may wait for the CPU": "就绪不同于运行：可运行的进程可能在等待 CPU",
    "Ready, Running and Blocked are every state a live process can be in": "就绪、运行、阻塞涵盖了存活进程的全部状态",
    "FCFS is simple but jobs may wait long (short jobs stuck behind long ones)": "FCFS 简单，但作业可能等待很久（短作业排在长作业后）",
    "SJF favours short jobs and can starve long ones": "SJF 优待短作业，可能使长作业饥饿",
    "RR is fair (every job runs soon) but pays for switching": "RR 公平（每个作业很快得到运行），但有切换开销",
    "MFQ combines the algorithms' advantages": "MFQ 结合了多种调度算法的优点",
    "RQ's ordered queues (high, default, low) are a multilevel queue, not an MFQ": "RQ 的有序队列（high、default、low）是多级队列，而不是多级反馈队列",
    "Running -> end: a process that finishes leaves the state diagram": "运行 → 结束：执行完毕的进程离开状态图",
    "children get their own copy of the data: the parent still prints 100": "子进程得到数据的独立副本：父进程打印的仍是 100",
    "Queue is FIFO": "Queue 先进先出",
    "Queue(maxsize) bounds the queue": "Queue(maxsize) 限制队列长度",
    "the chapter's END-per-producer sentinels (put back for the others) end consumers after all items": "教材“每个生产者一个 END（取到后放回）”的做法能在所有数据处理完后结束消费者",
    "the END-per-producer sentinels also work when one producer makes more items than the other": "生产者数据量不同时，“每个生产者一个 END”的做法同样可行",
    "the fix: one sentinel per consumer, sent after the producers finished, consumes every item exactly once": "改进：生产者结束后为每个消费者发一个哨兵，每条数据恰好被消费一次",
    "a Queue distributes tasks to a group of workers (each task done once)": "Queue 可以把任务分发给一组工作进程（每个任务只做一次）",
    "Pipe performs better (高) than Queue (中)": "Pipe 的性能（高）优于 Queue（中）",
    "Manager is the slowest (低) way to share data in-host": "Manager 是本机共享数据最慢（低）的方式",
    "sockets perform well (高, above Queue's 中)": "套接字性能高（高于 Queue 的“中”）",
    "Queue, Pipe, Value/Array and Manager are all 'shared memory' (内存共享类)": "Queue、Pipe、Value/Array 和 Manager 都属于“内存共享类”",
    "a network socket (Redis over TCP) carries messages between processes": "网络套接字（经 TCP 访问 Redis）可以在进程间传递消息",
    "sockets carry communication across machines": "套接字可用于跨机器通信",
    "Pipe is a two-way channel (duplex by default)": "Pipe 是双向通道（默认双工）",
    "unlike Queue, Pipe has no FIFO order": "与 Queue 不同，Pipe 没有先进先出机制",
    "when the sender closes its end, the receiver gets EOFError": "发送方关闭连接后，接收方得到 EOFError",
    "Pipe has no built-in lock: unsafe with several writers (Queue locks)": "Pipe 没有内置锁：多个写者同时写不安全（Queue 有锁）",
    "Pipe is faster than Queue (性能: 较快 vs 较慢)": "Pipe 比 Queue 快（性能：较快 vs 较慢）",
    "缓冲支持: Queue supports maxsize, Pipe has none": "缓冲支持：Queue 支持 maxsize，Pipe 无",
    "map() blocks and returns the results in input order": "map() 阻塞，并按输入顺序返回结果",
    "map_async() does not block; .get() waits for the results": "map_async() 不阻塞；.get() 等待结果",
    "apply() runs one task and blocks until it is done": "apply() 执行单个任务并阻塞到完成",
    "apply_async() calls callback with each result and error_callback with the exception": "apply_async() 用结果调用 callback，出错时用异常调用 error_callback",
    "imap() yields results in input order as they are computed": "imap() 边计算边按输入顺序产出结果",
    "imap_unordered() yields results as they finish (not in input order)": "imap_unordered() 按完成顺序产出结果（不保证输入顺序）",
    "starmap() unpacks argument tuples": "starmap() 会拆开参数元组",
    "repeated batches of small tasks: Pool is faster (no process creation per task)": "重复的小任务批次：Pool 更快（不必为每个任务创建进程）",
    "one batch of heavier tasks: Process is faster": "只有一批较重的任务：Process 更快",
    "the Pool's set-up pays off once work is repeated (crossover)": "工作重复多次后，进程池的准备开销就值得了（交叉点）",
    "a Pool limits how many processes run at once (限制同时运行进程数)": "进程池限制同时运行的进程数",
    "a Pool's processes are reused for many tasks (进程可重复使用)": "进程池的进程可以重复用于多个任务",
    "imap() computes and hands out results as it goes, lowering memory use on large data (降低内存占用)": "imap() 边计算边交出结果，数据量大时降低内存占用",
    "zombies occupy process-table entries (PIDs)": "僵尸进程占用进程表项（PID）",
    "the OS sends SIGCHLD to the parent when a child ends": "子进程结束时，操作系统向父进程发送 SIGCHLD",
    "a parent that does not wait leaves zombies; reaping on SIGCHLD leaves none": "父进程不 wait 会留下僵尸；收到 SIGCHLD 时回收则不会",
    "with SIGCHLD set to SIG_IGN the kernel reaps children itself (no zombie, no exit status)": "把 SIGCHLD 设为 SIG_IGN 时由内核直接回收子进程（没有僵尸，也没有退出状态）",
    "many zombies can exhaust the process table, so that no new process can be created": "大量僵尸进程会耗尽进程表，导致无法创建新进程",
    "the orphan keeps running after its parent dies": "父进程死后，孤儿进程继续运行",
    "an orphan is adopted by init (PID 1)": "孤儿进程被 init（PID 1）收养",
    "the adopter reaps the orphan's exit status, so orphans are harmless": "收养者会回收孤儿的退出状态，所以孤儿进程无害",
    "a process marked as a subreaper (prctl PR_SET_CHILD_SUBREAPER) adopts its orphaned descendants": "标记为子进程收割者（prctl PR_SET_CHILD_SUBREAPER）的进程会收养它的孤儿后代",
    "on modern Linux an orphan may not go to PID 1 (the chapter's note on systemd desktop sessions)": "在现代 Linux 上孤儿进程不一定交给 PID 1（教材关于 systemd 桌面会话的提示）",
    "with a subreaper, orphans go to it instead of PID 1": "存在收割者时，孤儿进程交给它而不是 PID 1",
    "overriding run() makes start() execute it in a new process named as given": "重写 run() 后，start() 会在以给定名字命名的新进程中执行它",
    "results stored on self in run() (self.result, self.processed_data) are available in the parent": "run() 中保存到 self 的结果（self.result、self.processed_data）在父进程中可用",
    "a subclass must call super().__init__()": "子类必须调用 super().__init__()",
    "without `if __name__ == '__main__':` spawn re-imports the main module and creates processes endlessly": "没有 `if __name__ == '__main__':` 时，spawn 重新导入主模块并无限创建进程",
    "spawn (Windows, and macOS/forkserver) needs the __main__ guard; fork does not": "spawn（Windows、macOS，以及 forkserver）需要 __main__ 保护，fork 不需要",
    "only Windows starts children by re-importing the main module (Linux forks)": "只有 Windows 通过重新导入主模块来启动子进程（Linux 用 fork）",
    "creating processes the Windows way (spawn) costs more than fork": "用 Windows 的方式（spawn）创建进程比 fork 开销大",
    "checking result.returncode by hand detects a failed command (no exception is raised)": "手动检查 result.returncode 能发现命令失败（不会抛出异常）",
    "run(input=...) feeds stdin and captures stdout": "run(input=...) 写入标准输入并捕获标准输出",
    "the chapter's inline `python -c` programs print their output": "教材中内联的 `python -c` 程序能正常输出",
    "run(['nonexistent_command']) returns a non-zero returncode and stderr": "run(['nonexistent_command']) 返回非零返回码和错误输出",
    "check=True raises CalledProcessError with returncode and stderr": "check=True 时抛出带返回码和错误输出的 CalledProcessError",
    "Popen can read a child's output line by line in real time": "Popen 可以实时逐行读取子进程的输出",
    "bufsize=1 (line buffering) with a child that flushes (the chapter's setup) gives real-time output": "bufsize=1（行缓冲）加上子进程主动 flush（教材的写法）可以实时输出",
    "bufsize=1 alone makes the output real-time (child without flush)": "仅靠 bufsize=1 就能实时输出（子进程不 flush）",
    "an interactive interpreter can be driven through stdin": "可以通过标准输入驱动交互式解释器",
    "a Popen child nobody waits for becomes a zombie": "没人等待的 Popen 子进程会变成僵尸",
    "on timeout, kill() ends the command (the chapter's run(timeout) and Popen communicate/kill/communicate)": "超时后 kill() 能结束命令（教材的 run(timeout) 与 Popen 的 communicate/kill/communicate）",
    "on timeout, kill() also ends a command that started a child of its own": "超时后 kill() 也能结束自己又启动了子进程的命令",
    "Queue has a built-in lock (内置锁): many writers at once lose or garble nothing": "Queue 内置锁：多个写者同时写入，数据不丢也不乱",
    "without a lock, concurrent updates of shared data are lost (6.5.1)": "没有锁时，并发更新共享数据会丢失更新（6.5.1）",
    "with a Lock every update counts (6.5.2)": "加锁后每次更新都有效（6.5.2）",
    "a Lock has a cost (性能: 中): the protected updates are slower": "锁有开销（性能：中）：受保护的更新更慢",
    "without a lock, concurrent buyers oversell (6.5.1)": "没有锁时，并发购票会超卖（6.5.1）",
    "a multiprocessing.Lock around read-modify-write sells exactly the stock (6.5.2)": "用 multiprocessing.Lock 保护“读-改-写”，恰好卖完库存（6.5.2）",
    "when the parent dies, init reaps its zombies": "父进程死后，init 会回收它的僵尸进程",
    "managed_processes() cleans up every process: no zombie is left (the chapter's setup)": "managed_processes() 清理所有进程，不留僵尸（教材的设置）",
    "a worker that outlives the timeout is terminated and reaped by managed_processes()": "超时仍未结束的工作进程会被 managed_processes() 终止并回收",
    "a child that ended but was not waited for is a zombie (ps: Z/<defunct>)": "已结束但未被等待的子进程是僵尸（ps 显示 Z/<defunct>）",
    "join() (wait) removes the zombie": "join()（wait）消除僵尸",
    "a zombie holds no memory, only its process-table entry": "僵尸不占内存，只占进程表项",
}  # fmt: skip
"""Every claim the lab judges, in Chinese (keyed by its English text)."""

EXPLAIN.update(coverage_text.EXPLAIN_ZH)
CLAIMS.update(coverage_text.CLAIMS_ZH)


def claim(text: str) -> str:
    """The Chinese for a claim (the English if there is none)."""
    return CLAIMS.get(text, text)


DESCRIPTIONS: dict[str, str] = {
    "identity": "父进程和子进程的 pid/ppid（os.getpid、os.getppid）",
    "states": "psutil 看到的进程状态：running（就绪或运行）、sleeping（阻塞）、stopped、zombie",
    "scheduling": "在同一组作业上模拟 FCFS/SJF/RR/MFQ（平均等待/周转时间），以及作为多级队列的 RQ high/default/low",
    "orphan": "父进程死后子进程被重新收养：交给 PID 1 或最近的收割者；由谁回收它",
    "zombie": "结束但未被等待的子进程是僵尸；join() 回收它；教材的 managed_processes() 不留僵尸",
    "many-zombies": "从不 wait 的父进程积累僵尸：每个占一个 PID；有进程数上限时 fork() 被拒绝",
    "sigchld": "子进程结束时操作系统发送 SIGCHLD：在处理函数里回收不留僵尸；SIG_IGN 让内核代为回收",
    "daemon": "父进程退出时守护子进程被终止，且守护进程不能再有子进程",
    "fork": "os.fork：父子进程中的返回值、写时复制隔离、waitpid（没有 fork 时明确拒绝）",
    "process-api": "start/join(timeout)/terminate/kill/is_alive/exitcode/name/pid，run 与 start，args/kwargs 错误",
    "subclass": "重写 run() 的 Process 子类；之后父进程中它的属性是什么样子",
    "start-methods": "fork/spawn/forkserver 的启动开销，spawn/forkserver 为何需要 __main__ 保护，默认方式",
    "isolation": "十个子进程各减一次全局变量：各改各的副本，父进程仍是 100",
    "queue": "Queue 的生产者/消费者与哨兵、工作进程组：每条数据是否恰好被消费一次？",
    "pipe": "Pipe 单向与双工、消息顺序、关闭时的 EOF、两个写者共用一端",
    "queue-vs-pipe": "实测 Queue 与 Pipe：往返延迟、100 B 与 1 MiB 消息的吞吐",
    "many-writers": "多个进程同时写大消息：一个 Queue（有锁）对比一个 Pipe 端（无锁）",
    "lock-cost": "多个进程不加锁/加锁累加同一个计数器：丢失的更新，以及锁的代价",
    "lock": "教材的购票程序，不加锁与加锁（见 `mplab tickets local`）",
    "ipc-table": "实测 IPC 对比表：Queue、SimpleQueue、Pipe、Value/Array、Manager、socket、经 TCP 的 Redis",
    "pool-methods": "map、map_async、apply、apply_async（callback、error_callback）、imap、imap_unordered、starmap，带计时",
    "pool-reuse": "进程池同时最多运行 processes 个任务，并且所有任务都复用同一批工作进程",
    "imap-memory": "对大的可迭代对象用 map() 与 imap()：逐个消费结果时父进程的内存峰值",
    "pool-vs-process": "进程池对比每个任务一个 Process：多批小任务、一批重任务，以及交叉点",
    "subprocess": "run（捕获/输入/check/超时）、Popen 流式读取与标准输入、程序不存在、结束整个进程树",
}
"""What each experiment shows, in Chinese (for `lab list` and `lab show`)."""
DESCRIPTIONS.update(coverage_text.DESCRIPTIONS_ZH)
