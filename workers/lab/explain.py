"""What each experiment teaches: the reason behind what it shows, for `mplab lab show NAME`.

The code shown next to it is the experiment's own source (`inspect`), so it can never drift from what
runs. Texts are short paragraphs; `EXTRA_CODE` names the child functions worth reading with the run.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass

from workers.lab import coverage_text

EXPLAIN: dict[str, str] = {
    "identity": (
        "Every process has a PID; os.getppid() names its parent. A child created with fork (or spawn) is the "
        "OS child of its creator, so its getppid() is the creator's PID. With forkserver the OS parent is the "
        "fork server, not your process: that is why the parentage experiments use fork where they can, and say so."
    ),
    "states": (
        "The chapter's three states map onto what Linux reports: Ready and Running are both 'R' (runnable: on a "
        "CPU or waiting for one), Blocked is 'S' (sleeping in a system call such as recv()). With more CPU-bound "
        "children than cores, each gets a share below one core: the rest of the time it is Ready. Linux also has "
        "'T' (stopped by SIGSTOP) and 'Z' (zombie, section 4.2), which the diagram leaves out."
    ),
    "scheduling": (
        "The algorithms are simulated on one job mix with the same cost per switch for all. FCFS makes short "
        "jobs wait behind long ones (convoy); SJF minimises waiting but starves long jobs; RR answers every job "
        "quickly at the price of many switches; MFQ starts every job with a short slice (RR's responsiveness) "
        "and demotes long jobs to longer slices (fewer switches), without knowing burst times. An RQ worker on "
        "'high,default,low' is a strict multilevel queue: no feedback, no preemption."
    ),
    "orphan": (
        "When a parent dies first, the kernel re-parents its children to the nearest ancestor marked as a "
        "'child subreaper' (prctl PR_SET_CHILD_SUBREAPER), or to PID 1. Desktop systemd user sessions are "
        "subreapers, which is the chapter's 4.1.2 note. The adopter wait()s for the orphan when it exits, so "
        "an orphan's zombie lasts only until the adopter notices."
    ),
    "zombie": (
        "A finished child keeps its process-table entry (exit status, PID) until its parent wait()s for it: "
        "that is a zombie, with no memory left. join() calls waitpid(). multiprocessing also reaps finished "
        "children whenever you start another Process or call active_children(). The chapter's "
        "managed_processes() joins with a timeout, then terminate()s and joins again: fine for children that "
        "end on SIGTERM; one that ignores SIGTERM would make its final join() wait for ever (add kill())."
    ),
    "daemon": (
        "daemon=True is multiprocessing's flag, not a Unix daemon: at exit the parent terminate()s its daemonic "
        "children and join()s the others. A daemonic child may not start Processes (it would orphan them when "
        "it is terminated), but it keeps its parent's session and terminal; a Unix daemon detaches with setsid()."
    ),
    "fork": (
        "fork() duplicates the calling process: the parent gets the child's PID, the child gets 0 and learns "
        "its parent from getppid(). Memory is shared copy-on-write, so fork is fast and the child's unique "
        "memory (USS) grows only with the pages it writes. fork copies only the calling thread: a lock held by "
        "another thread at that moment (in logging, malloc, an import) stays locked for ever in the child. "
        "That is why Python 3.12 warns when a process with threads forks, and why Python 3.14 made forkserver "
        "the default start method on Linux: the fork server is a clean single-threaded process."
    ),
    "process-api": (
        "start() creates the process and runs run() there; calling run() yourself is an ordinary call. Argument "
        "errors surface in the child, never at start(). terminate() sends SIGTERM: a normal child dies with "
        "exitcode -15, but a child can ignore or handle SIGTERM, and kill() (SIGKILL) cannot be ignored. "
        "terminate() is hazardous: a child killed while it holds a Lock never releases it, and one killed while "
        "putting to a Queue can leave the queue's internal pipe half-written (the docs warn the queue may "
        "become corrupted). Stop children by telling them (a sentinel, an Event) and use terminate() as a last "
        "resort. Under spawn and forkserver, the target and its arguments are pickled: lambdas, local functions "
        "and open connections to other services cannot be sent."
    ),
    "subclass": (
        "A Process subclass runs run() in the child on a copy of the object (pickled under spawn/forkserver, "
        "copied by fork): attributes it sets there never reach the parent's object. Results come back through "
        "a Queue, a Pipe or shared memory."
    ),
    "start-methods": (
        "fork copies the parent; spawn starts a fresh interpreter that imports the main module again and "
        "unpickles the target; forkserver forks children from a clean server process. Re-importing the main "
        "module is why spawn needs `if __name__ == '__main__':`: without it the import starts a process again, "
        "and multiprocessing stops it with: RuntimeError: An attempt has been made to start a new process "
        "before the current process has finished its bootstrapping phase. This probably means that you are "
        "not using fork to start your child processes and you have forgotten to use the proper idiom in the "
        "main module: if __name__ == '__main__': freeze_support() ... The \"freeze_support()\" line can be "
        "omitted if the program is not going to be frozen to produce an executable. Everything sent to a "
        "spawn/forkserver child must be picklable: module-level "
        "functions yes; lambdas, nested functions, locks taken from elsewhere no. macOS uses spawn since 3.8, "
        "Linux forkserver since 3.14."
    ),
    "isolation": (
        "Each child changes its own copy of the global (copy-on-write with fork, a fresh import with spawn): "
        "the parent still sees 100. Only shared memory (Value/Array, shared_memory) or messages change data "
        "across processes."
    ),
    "queue": (
        "A Queue is a pipe plus a feeder thread and a lock: FIFO per producer, safe with many producers and "
        "consumers, bounded by maxsize. Sentinels must match the consumers: the chapter's END-per-producer "
        "scheme works for its even 3+3 setup, but a consumer stops at the first END, so a longer producer's "
        "items can be left behind; one sentinel per consumer, sent after the producers finished, is exact. "
        "A process that has put items on a Queue does not exit until its feeder thread has flushed them: "
        "joining it before the items are consumed deadlocks (get() first, then join())."
    ),
    "pipe": (
        "Pipe() is a socketpair (duplex) or an os.pipe (duplex=False): a byte stream, so messages arrive in the "
        "order sent. The receiver gets EOFError only when every copy of the sending end is closed, including the "
        "copy the parent still holds. It has no lock: two processes writing large messages on one end "
        "interleave their bytes."
    ),
    "queue-vs-pipe": (
        "A Pipe send() is one pickle and one write; a Queue put() hands the object to a feeder thread that "
        "pickles and writes it under a lock, so a Queue costs more per message and gains multi-producer safety "
        "and maxsize. A Pipe does buffer (in the kernel, in bytes), it just cannot be bounded in messages."
    ),
    "lock": (
        "Read-modify-write on a shared file from several processes loses updates: two buyers read the same "
        "count and both sell. A multiprocessing.Lock around the whole read-check-write makes it atomic; the "
        "ledger of `mplab tickets local` shows every sale."
    ),
    "ipc-table": (
        "Every mechanism is measured with the same payloads, in rounds, so the chapter's adjectives become "
        "numbers with a spread. Only Value/Array are shared memory; Queue, Pipe, Manager and sockets all pickle "
        "and copy. A Manager answers every access from its server process, hence its cost. Redis over TCP "
        "shows what the network adds."
    ),
    "pool-methods": (
        "map blocks and keeps input order; map_async returns at once; apply runs one task; apply_async takes "
        "callbacks, which run in the parent's result-handler thread; imap yields in input order as results come; "
        "imap_unordered yields as tasks finish; starmap unpacks tuples."
    ),
    "pool-vs-process": (
        "A Pool pays for its workers once and reuses them; one Process per task pays creation every time. With "
        "many small batches the Pool wins; for one batch of heavier tasks the Pool's set-up and task "
        "hand-off can cost more than it saves."
    ),
    "subprocess": (
        "run() waits and captures; Popen streams. bufsize=1 is line buffering on the parent's side only: the "
        "child must flush (as the chapter's child does) or run with -u. On timeout, kill() ends the child "
        "itself; a grandchild it started survives and may hold the output pipe open, so start such commands in "
        "a new session and kill the whole group (os.killpg)."
    ),
    "many-writers": (
        "A Queue's put() writes each message whole under a lock, so many writers never interleave; one Pipe end "
        "has no lock, and several processes writing large messages interleave their bytes: the reader gets "
        "garbled messages or a broken stream."
    ),
    "lock-cost": (
        "value += 1 is read, add, write: another process can slip in between, and updates are lost. A Lock makes "
        "every update count, at a price per acquire/release: the '中' of the chapter's table."
    ),
    "pool-reuse": (
        "A Pool's size is the cap on tasks running at once; tasks are handed to the existing workers one after "
        "another, no process is created per task."
    ),
    "imap-memory": (
        "map() turns the input into a list and collects every result before it returns; imap() hands results "
        "out as they come, so a consumer that handles them one by one keeps only a few in memory."
    ),
    "many-zombies": (
        "A zombie holds no memory, but it holds a PID and a process-table entry, and it counts against the "
        "user's process limit (RLIMIT_NPROC). A parent that never reaps piles them up until fork() is refused. "
        "root is exempt from RLIMIT_NPROC."
    ),
    "sigchld": (
        "The kernel sends SIGCHLD to a parent when a child ends. Reap in the handler with waitpid(-1, WNOHANG) in "
        "a loop (several exits may arrive as one signal); or set SIGCHLD to SIG_IGN and the kernel reaps for you, "
        "leaving no exit status to read."
    ),
}
"""Why each experiment behaves as it does (English)."""

EXTRA_CODE: dict[str, tuple[str, ...]] = {
    "orphan": ("_orphan_parent", "_orphan_grandchild"),
    "zombie": ("managed_processes", "_managed"),
    "daemon": ("_daemon_parent", "_daemon_body"),
    "queue": ("_producer", "_chapter_consumer"),
    "pipe": ("pipe_writer",),
    "queue-vs-pipe": ("_unread_sends",),
    "pool-vs-process": ("chapter_task", "_processes", "_pool"),
    "start-methods": ("GUARD_SCRIPT",),
    "subprocess": ("_timeouts",),
}
"""Module-level names shown after an experiment's run function."""

EXPLAIN.update(coverage_text.EXPLAIN)
EXTRA_CODE.update(coverage_text.EXTRA_CODE)


@dataclass(frozen=True)
class Shown:
    """What `lab show` prints: the explanation and the code, each piece with its title."""

    explanation: str
    code: list[tuple[str, str]]


def show(name: str) -> Shown:
    """The explanation and source of experiment `name` (NotFound for an unknown name)."""
    import workers.lab as lab

    exp = lab.get(name)
    module = sys.modules[exp.run.__module__]
    code = [(f"{module.__name__}.{exp.run.__name__}", inspect.getsource(exp.run))]
    for extra in EXTRA_CODE.get(name, ()):
        obj = getattr(module, extra)
        text = obj if isinstance(obj, str) else inspect.getsource(obj)
        code.append((f"{module.__name__}.{extra}", text))
    return Shown(EXPLAIN.get(name, exp.description), code)
