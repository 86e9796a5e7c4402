"""runcell Bash kernel driver.

Runs inside the sandbox, started as ``/usr/bin/python3 -I -c <this file's contents> <bash>``. It
speaks the framed protocol (src/kernels/protocol.ts, docs/kernel-protocol.md) on fds 3 and 4 and
keeps one interactive ``bash`` in its own process group, which holds the notebook's context:
variables, functions, aliases, options and the working directory.

Why an *interactive* shell (``-i``, fed through a pipe, no terminal): SIGINT then does what it does
at a prompt. It stops the foreground command, discards the rest of the command line (the rest of
the cell) and returns to the prompt with everything defined so far; a busy loop of builtins stops
too, and an unset ``${x:?}`` fails the command instead of exiting the shell. A script-mode shell
would either die of the SIGINT or, with a trap, carry on with the next command. Aliases work, as at
a prompt. Prompts and bash's own messages between commands go to /dev/null.

One cell is one command line written to bash's stdin (a pipe only bash reads):

    S-marker; read the cell's code from a memfd; restore $?; eval "$code" </dev/null >out 2>err

- A SIGINT while bash reads a line would leave the rest of it to run as a command, so the driver
  signals only once the line's first command reported ``S`` (bash reads a whole line before it
  runs any of it); an interrupt that comes earlier waits for that. The code itself never passes
  through the pipe: it sits in a memfd the line reads, and the line stays short.
- ``</dev/null``: commands that read stdin get EOF instead of the shell's command pipe.
- Output goes to two pipes (stdout, stderr) opened for the cell through /proc/<driver>/fd, as is
  the control pipe, so the processes a cell starts inherit none of the driver's channels.
- The end of the cell is PROMPT_COMMAND (read-only), which bash runs before every prompt, after
  an interrupt too: it writes ``E<status>`` on the control pipe. Nothing the cell prints can look
  like that; code that writes to the control pipe on purpose only breaks its own kernel.

The cell's status is that of its last command, as at a prompt and in Jupyter's bash_kernel:
non-zero is an error result ``ExitStatus: exit status N``. ``exit`` (or anything else that ends the
shell) ends the kernel after the cell's result says so; the server starts a fresh one for the next
cell and reports the lost context.

stdout and stderr each keep their order; between them, the order is the order the driver reads
the two pipes: right when the writes are a command apart, not always for builtins that write to
both back to back (`echo a; echo b >&2; echo c` may arrive as `a c`, then `b`). One pipe for both
would keep the order and lose which stream is which.

Also as at a prompt: `cmd &` prints `[1] <pid>` on stderr; a background job's output goes to the
cell running when it is written (dropped between cells); under `set -e`, a cell that ends
non-zero ends the shell (the cell is one `eval`). Unlike at a prompt, `exec >file` lasts for the
rest of its cell only.
"""

import codecs
import json
import os
import select
import signal
import struct
import sys
import time
from collections import deque

REQUEST_FD = 3
EVENT_FD = 4
# Buffered output is sent once it reaches this many bytes, or this many seconds after it was
# written (a line after a quiet spell goes at once).
FLUSH_BYTES = 64 * 1024
FLUSH_INTERVAL = 0.02
# Characters per stream frame (JSON escapes make a frame at most ~6x this; the limit is 64 MiB).
FRAME_CHARS = 1 << 20
# Reading the output pipes before a result: at most this much per pipe, so a background job that
# writes without pause cannot hold the result back.
SYNC_DRAIN_BYTES = 4 << 20
DEFAULT_MAX_OUTPUT = 16 << 20
# Seconds between the SIGINTs of one interrupt (see Driver.signal_cell); the server's grace
# period (2 s by default) leaves room for a few.
INTERRUPT_REPEAT = 0.5
READ_BYTES = 65536

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_dumps_ascii = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode
_len = struct.Struct(">I")


def send(message):
    """Writes one whole frame to fd 4; exits if the server is gone."""
    try:
        body = _dumps(message).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: let JSON escape them
        body = _dumps_ascii(message).encode("ascii")
    data = memoryview(_len.pack(len(body)) + body)
    while data:
        try:
            data = data[os.write(EVENT_FD, data) :]
        except InterruptedError:
            continue
        except OSError:
            os._exit(1)


def utf8_len(text):
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def cut_utf8(text, limit):
    """Longest prefix of text that is at most limit UTF-8 bytes."""
    if text.isascii():
        return text[:limit]
    data = text.encode("utf-8", "surrogatepass")[: limit + 1]
    end = limit
    while 0 < end < len(data) and (data[end] & 0xC0) == 0x80:
        end -= 1
    return data[:end].decode("utf-8", "surrogatepass")


class CellOutput:
    """One cell's output: budgeted by maxOutputBytes, batched into stream frames."""

    def __init__(self, cell, max_bytes):
        self.cell = cell
        self.remaining = max_bytes
        self.dropped = 0
        self.pending = []  # [[name, [text, ...]], ...] in the order read
        self.pending_bytes = 0
        self.last_flush = 0.0
        self.deadline = None  # when the buffer must go out
        self.decoders = {
            "stdout": codecs.getincrementaldecoder("utf-8")("replace"),
            "stderr": codecs.getincrementaldecoder("utf-8")("replace"),
        }

    def feed(self, name, data):
        if self.remaining <= 0:
            self.dropped += len(data)  # past the budget: counted, never decoded
            return
        self.add(name, self.decoders[name].decode(data))

    def add(self, name, text):
        if not text:
            return
        n = utf8_len(text)
        if n > self.remaining:
            kept = cut_utf8(text, self.remaining)
            self.dropped += n - utf8_len(kept)
            self.remaining = 0
            text = kept
            if not text:
                return
            n = utf8_len(text)
        else:
            self.remaining -= n
        if self.pending and self.pending[-1][0] == name:
            self.pending[-1][1].append(text)
        else:
            self.pending.append([name, [text]])
        self.pending_bytes += n
        now = time.monotonic()
        if self.pending_bytes >= FLUSH_BYTES:
            self.flush()
        elif text.endswith("\n") and now - self.last_flush >= FLUSH_INTERVAL:
            self.flush()  # leading edge: output that comes now and then is seen live
        elif self.deadline is None:
            self.deadline = now + FLUSH_INTERVAL

    def flush(self):
        self.deadline = None
        if not self.pending:
            return
        self.last_flush = time.monotonic()
        pending, self.pending, self.pending_bytes = self.pending, [], 0
        for name, chunks in pending:
            text = "".join(chunks)
            for start in range(0, len(text), FRAME_CHARS):
                send(
                    {
                        "type": "stream",
                        "id": self.cell,
                        "name": name,
                        "text": text[start : start + FRAME_CHARS],
                    }
                )

    def finish(self):
        """Sends what is left, a trailing partial UTF-8 sequence included."""
        for name, decoder in self.decoders.items():
            if self.remaining > 0:
                self.add(name, decoder.decode(b"", True))
        self.flush()


class Cell:
    def __init__(self, request):
        self.id = request.get("id")
        code = request.get("code")
        self.code = code if isinstance(code, str) else ""
        cap = request.get("maxOutputBytes")
        self.max_output = cap if isinstance(cap, int) and cap >= 0 else DEFAULT_MAX_OUTPUT
        self.started = False  # bash runs the cell's line (the S marker arrived)
        self.interrupted = False  # an interrupt was asked for
        self.resignal_at = None  # when to send SIGINT again, once it was sent
        self.output = None


class Driver:
    def __init__(self, bash):
        me = os.getpid()
        self.cmd_r, self.cmd_w = os.pipe()
        self.out_r, out_w = os.pipe()
        self.err_r, err_w = os.pipe()
        self.ctl_r, ctl_w = os.pipe()
        self.code_fd = os.memfd_create("runcell-cell", os.MFD_CLOEXEC)
        for fd in (self.out_r, self.err_r, self.ctl_r):
            os.set_blocking(fd, False)
        # bash opens these through /proc for each use, so they stay out of every child process.
        proc = "/proc/%d/fd/" % me
        self.ctl_path = proc + str(ctl_w)
        self.code_path = proc + str(self.code_fd)
        self.out_path = proc + str(out_w)
        self.err_path = proc + str(err_w)
        devnull = os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC)
        # An interactive bash resets its terminal after a command dies of a signal (`yes | head`)
        # and complains on the cell's stderr when it has none: it gets a pty of its own, kept
        # by the shell (its fd 255) while its fd 2 goes to /dev/null.
        self.pty, tty = os.openpty()
        # Python ignores SIGPIPE and SIGXFSZ: the shell must not inherit that (`yes | head`).
        self.pid = os.posix_spawn(
            bash,
            [bash, "--noprofile", "--norc", "--noediting", "+m", "-i"],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, self.cmd_r, 0),
                (os.POSIX_SPAWN_DUP2, devnull, 1),
                (os.POSIX_SPAWN_DUP2, tty, 2),
            ],
            setpgroup=0,
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT),
        )
        for fd in (devnull, tty, self.cmd_r):
            os.close(fd)
        self.pidfd = os.pidfd_open(self.pid)
        self.requests = deque()
        self.early = set()  # queued cells interrupted before they began
        self.current = None
        self.ready = False
        self.version = ""
        self.frames = bytearray()
        self.ctl_buffer = b""
        # Every name the line and PROMPT_COMMAND use is \builtin, so a cell's aliases and
        # functions (a function called printf...) cannot hijack them.
        prompt = (
            "__runcell_status=$?; \\builtin unset -v __runcell_code; "
            "\\builtin printf 'E%%s\\n' \"$__runcell_status\" >|%s" % self.ctl_path
        )
        self.write_line(
            "\\builtin exec 2>/dev/null; \\builtin set +o history +H; "
            "\\builtin unset -v HISTFILE MAIL MAILCHECK PROMPT_COMMAND; PS1=; PS2=; __runcell_status=0; "
            '__runcell_return() { \\builtin return "$1"; }; \\builtin readonly -f __runcell_return; '
            "\\builtin readonly PROMPT_COMMAND=%s; "
            "\\builtin printf 'R%%s\\n' \"$BASH_VERSION\" >|%s" % (shell_quote(prompt), self.ctl_path)
        )

    def write_line(self, line):
        data = (line + "\n").encode("utf-8")
        while data:
            data = data[os.write(self.cmd_w, data) :]

    # ----------------------------------------------------------------------------------------
    # Requests

    def on_requests(self):
        try:
            data = os.read(REQUEST_FD, READ_BYTES)
        except InterruptedError:
            return
        if not data:  # the server is gone
            self.stop_shell()
            os._exit(0)
        self.frames += data
        while len(self.frames) >= 4:
            (length,) = _len.unpack_from(self.frames)
            if len(self.frames) < 4 + length:
                break
            message = json.loads(self.frames[4 : 4 + length])
            del self.frames[: 4 + length]
            kind = message.get("type")
            if kind == "execute":
                self.requests.append(message)
            elif kind == "interrupt":
                self.on_interrupt(message.get("id"))

    def on_interrupt(self, cell_id):
        cell = self.current
        if cell is not None and cell.id == cell_id:
            if not cell.interrupted:
                cell.interrupted = True
                self.signal_cell()
        elif any(r.get("id") == cell_id for r in self.requests):
            self.early.add(cell_id)

    def signal_cell(self):
        """SIGINT to the shell and its foreground commands (background jobs ignore it, as in a
        shell without job control); again every INTERRUPT_REPEAT until the cell ends, as a user
        presses Ctrl-C again: a SIGINT that lands while bash has forked a command but not yet
        exec'd it is caught by the child's copy of bash's handler and lost, and bash then waits
        for the command to finish."""
        cell = self.current
        if not cell.started:
            return  # sent when the S marker arrives
        cell.resignal_at = time.monotonic() + INTERRUPT_REPEAT
        try:
            os.killpg(self.pid, signal.SIGINT)
        except ProcessLookupError:
            pass

    # ----------------------------------------------------------------------------------------
    # Cells

    def start_next(self):
        while self.current is None and self.requests and self.ready:
            cell = Cell(self.requests.popleft())
            if cell.id in self.early:
                self.early.discard(cell.id)
                send(self.error_result(cell, "Interrupted", "the cell was interrupted", True))
                continue
            if "\0" in cell.code:
                send(self.error_result(cell, "InvalidCell", "the cell contains a NUL character", False))
                continue
            code = memoryview(cell.code.encode("utf-8", "replace"))
            os.ftruncate(self.code_fd, 0)
            offset = 0
            while offset < len(code):
                offset += os.pwrite(self.code_fd, code[offset:], offset)
            cell.output = CellOutput(cell.id, cell.max_output)
            self.current = cell
            # `&& :` keeps the restored $? from tripping `set -e` or an ERR trap; `>|` works under
            # `set -C`.
            self.write_line(
                "\\builtin printf 'S\\n' >|%s; "
                "IFS= \\builtin read -r -d '' __runcell_code <%s || \\builtin :; "
                '__runcell_return "$__runcell_status" && \\builtin :; '
                '\\builtin eval "$__runcell_code" </dev/null >|%s 2>|%s'
                % (self.ctl_path, self.code_path, self.out_path, self.err_path)
            )

    def error_result(self, cell, ename, evalue, interrupted):
        message = {
            "type": "result",
            "id": cell.id,
            "status": "error",
            "ename": ename,
            "evalue": evalue,
            "traceback": [],
        }
        if interrupted:
            message["interrupted"] = True
        return message

    def finish(self, status):
        """The shell is back at its prompt (status) or gone (None)."""
        cell = self.current
        self.current = None
        self.drain(SYNC_DRAIN_BYTES)
        cell.output.finish()
        if status is None:
            message = self.error_result(cell, "ShellExited", self.exit_text(), False)
        elif status == 0:
            message = {"type": "result", "id": cell.id, "status": "ok", "value": None}
        elif cell.interrupted:
            message = self.error_result(
                cell, "Interrupted", "the cell was interrupted (exit status %d)" % status, True
            )
        else:
            message = self.error_result(cell, "ExitStatus", status_text(status), False)
        if cell.output.dropped:
            message["dropped"] = cell.output.dropped
        send(message)
        os.ftruncate(self.code_fd, 0)

    def exit_text(self):
        _, status = os.waitpid(self.pid, 0)
        how = (
            "was killed by signal %d" % os.WTERMSIG(status)
            if os.WIFSIGNALED(status)
            else "exited with status %d" % os.waitstatus_to_exitcode(status)
        )
        return "the shell %s; its variables, functions and working directory are gone" % how

    def on_control(self):
        try:
            data = os.read(self.ctl_r, READ_BYTES)
        except BlockingIOError:
            return
        self.ctl_buffer += data
        *lines, self.ctl_buffer = self.ctl_buffer.split(b"\n")
        for line in lines:
            kind, rest = line[:1], line[1:]
            cell = self.current
            if kind == b"R":
                self.version = rest.decode("utf-8", "replace")
            elif kind == b"S" and cell is not None:
                cell.started = True
                if cell.interrupted:
                    self.signal_cell()
            elif kind == b"E" and rest.isdigit():
                if not self.ready:
                    self.ready = True
                    send({"type": "ready", "language": "bash", "version": self.version})
                # Only after the cell's S: an E before it is a duplicate from the last prompt.
                elif cell is not None and cell.started:
                    self.finish(int(rest))

    # ----------------------------------------------------------------------------------------
    # Output

    def drain(self, limit):
        for fd, name in ((self.out_r, "stdout"), (self.err_r, "stderr")):
            total = 0
            while total < limit:
                try:
                    data = os.read(fd, READ_BYTES)
                except BlockingIOError:
                    break
                total += len(data)
                self.route(name, data)

    def route(self, name, data):
        # Between cells (a background job still writing), output is read and dropped.
        if self.current is not None:
            self.current.output.feed(name, data)

    def stop_shell(self):
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def run(self):
        poller = select.poll()
        for fd in (REQUEST_FD, self.out_r, self.err_r, self.ctl_r, self.pidfd):
            poller.register(fd, select.POLLIN)
        names = {self.out_r: "stdout", self.err_r: "stderr"}
        while True:
            cell = self.current
            wake = [] if cell is None else [t for t in (cell.output.deadline, cell.resignal_at) if t]
            timeout = max(0.0, (min(wake) - time.monotonic()) * 1000.0) if wake else None
            events = dict(poller.poll(timeout))
            # Output first: what a cell wrote is read before the control line that ends it.
            for fd, name in names.items():
                if fd in events:
                    try:
                        self.route(name, os.read(fd, READ_BYTES))
                    except BlockingIOError:
                        pass
            if self.ctl_r in events:
                self.on_control()
            if self.pidfd in events:
                if self.current is not None:
                    self.finish(None)  # the cell's result says how the shell ended
                    os._exit(0)
                diag(self.exit_text())
                os._exit(1 if self.ready else 70)
            if REQUEST_FD in events:
                self.on_requests()
            cell = self.current
            if cell is not None:
                now = time.monotonic()
                if cell.output.deadline is not None and now >= cell.output.deadline:
                    cell.output.flush()
                if cell.resignal_at is not None and now >= cell.resignal_at:
                    self.signal_cell()
            self.start_next()


def status_text(status):
    """`exit status 137 (SIGKILL)`: bash reports death by signal N as status 128 + N."""
    text = "exit status %d" % status
    try:
        return text + " (%s)" % signal.Signals(status - 128).name if status > 128 else text
    except ValueError:
        return text


def diag(message):
    """The driver's last words, on fd 2 (the server keeps them for its logs)."""
    try:
        os.write(2, ("runcell bash driver: " + message + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


def shell_quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


# The shell and what it runs get fds 0-2 only: not the frame channels, nor anything the server
# let the sandbox inherit.
for _fd in os.listdir("/proc/self/fd"):
    if int(_fd) > 2:
        try:
            os.set_inheritable(int(_fd), False)
        except OSError:
            pass  # the directory listing's own fd, closed by now
Driver(sys.argv[1]).run()
