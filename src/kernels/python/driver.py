"""runcell Python kernel driver.

Runs inside the sandbox as one long-lived interpreter per notebook, started as
``/usr/bin/python3 -I -S -c <bootstrap>`` with this file's code object, compiled once by the
server, on stdin (so: standard library only, one file, no ``__file__``). See
src/kernels/protocol.ts and docs/kernel-protocol.md.

Start-up time is the kernel's cold start: the driver imports only C modules and a few small
ones: ``_thread``, ``_queue`` and ``_signal`` rather than ``threading``, ``queue`` and
``signal`` (which pull in ``functools``, ``collections`` and ``enum``), no ``json`` (``re`` and
``enum`` again: the C ``_json`` codec is used directly),
``traceback`` and ``linecache`` on a thread once it is ready, and no ``site``: the system's package
directories are put on sys.path without running their .pth start-up hooks.

Channels: requests arrive as frames on fd 3, events leave as frames on fd 4 (a frame is a 4-byte
big-endian length then UTF-8 JSON). fds 1 and 2 are re-pointed at a pipe whose contents (output of
subprocesses, C code, os.write(1, ...)) become the running cell's stdout; the original fd 2 is kept
for the driver's own last words.

Threads:
- main: runs cells one at a time, in one persistent namespace;
- reader: reads fd 3, queues execute requests, turns interrupt requests into SIGINT for main;
- pump: forwards the fd 1/2 pipe and flushes buffered output every FLUSH_INTERVAL seconds;
- preload: imports traceback once the kernel is ready (see below).

Output of a cell goes into a small buffer (bounded by FLUSH_BYTES) that is flushed by size, by time,
and before the cell's result; nothing is sent for a cell after its result.
"""

# Bind what the driver needs before user code can shadow or monkeypatch it: cells may reassign
# builtins, patch os.write, replace sys.modules entries, etc.
from builtins import (
    BaseException,
    BlockingIOError,
    Exception,
    InterruptedError,
    KeyboardInterrupt,
    OSError,
    TypeError,
    UnicodeEncodeError,
    ValueError,
    bytes,
    compile,
    eval,
    getattr,
    id,
    isinstance,
    len,
    list,
    memoryview,
    property,
    range,
    repr,
    reversed,
    set,
    str,
    type,
)
import builtins
import __future__
# The node classes and flags live in the C module; the `ast` package on top costs ~5 ms of start.
import _ast as ast
import _json
import _queue
import _signal as _c_signal
import _thread
import codecs
import faulthandler
import io
import os
import select
import struct
import sys
import time
import types

REQUEST_FD = 3
EVENT_FD = 4
# Buffered output is sent once it reaches this many bytes...
FLUSH_BYTES = 64 * 1024
# ...or this many seconds after it was written.
FLUSH_INTERVAL = 0.02
# Characters per stream frame (JSON escapes make a frame at most ~6x this; the limit is 64 MiB).
FRAME_CHARS = 1 << 20
# A cell's trailing value and error text are capped on their own (besides maxOutputBytes).
MAX_VALUE_BYTES = 8 << 20
MAX_TRACEBACK_CHARS = 1 << 20
# Reading the fd 1/2 pipe before a result: at most this much (more than any pipe buffer holds),
# so a background process that writes without pause cannot hold the result back.
SYNC_DRAIN_BYTES = 4 << 20
DEFAULT_MAX_OUTPUT = 16 << 20
CO_COROUTINE = 0x80
CELL_PREFIX = "<cell-"

_write = os.write
_read = os.read
_exit = os._exit


def _unserializable(value):
    raise TypeError("not JSON serializable: " + type(value).__name__)


def _json_encoder(encode_string):
    # What json.JSONEncoder(separators=(",", ":"), check_circular=False).encode runs, minus the
    # imports of the json package.
    encode = _json.make_encoder(None, _unserializable, encode_string, None, ":", ",", False, False, True)
    return lambda value: "".join(encode(value, 0))


class _JsonContext:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = None


_scan_json = _json.make_scanner(_JsonContext())


def _loads(data):
    text = str(data, "utf-8")
    value, end = _scan_json(text, 0)
    if end != len(text):
        raise ValueError("extra data after the JSON value at " + str(end))
    return value


_dumps = _json_encoder(_json.encode_basestring)
_dumps_ascii = _json_encoder(_json.encode_basestring_ascii)
_pack_len = struct.Struct(">I").pack
_unpack_len = struct.Struct(">I").unpack_from
_monotonic = time.monotonic
_get_ident = _thread.get_ident
_pthread_kill = _c_signal.pthread_kill
_signal = _c_signal.signal
_getsignal = _c_signal.getsignal
_SIGINT = _c_signal.SIGINT
_Lock = _thread.allocate_lock
_TracebackType = types.TracebackType
_StringIO = io.StringIO
# Cells' sources, for tracebacks (and inspect.getsource): linecache entries, handed to linecache
# once something has imported it.
_SOURCES = {}
_sources_synced = 0
_ast_parse_flags = ast.PyCF_ONLY_AST
_TOP_LEVEL_AWAIT = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
_ast_Expr = ast.Expr
_ast_Expression = ast.Expression
_ast_ImportFrom = ast.ImportFrom
_ast_Module = ast.Module
_utf8_decoder = codecs.getincrementaldecoder("utf-8")
_BaseExceptionGroup = getattr(builtins, "BaseExceptionGroup", ())
_FUTURE_FLAGS = [getattr(__future__, name).compiler_flag for name in __future__.all_feature_names]

DRIVER_GLOBALS = globals()
MAIN_IDENT = _get_ident()
_DRIVER_MODULE = sys.modules.get("__main__")  # keep the -c module (and so these globals) alive


class _State:
    """Mutable driver state. Fields touched by several threads are guarded as noted."""

    def __init__(self):
        # Output (guarded by out_lock).
        self.out_lock = _Lock()
        self.cur_id = None  # cell whose output is being collected; None: output is dropped
        self.remaining = 0  # bytes of output the cell may still send
        self.max_output = 0  # the cell's whole output limit (maxOutputBytes)
        self.dropped = 0
        self.pending = []  # [[name, [text, ...]], ...] in write order
        self.niced = False  # a fork of the kernel lowered its priority (its own forks inherit it)
        self.pending_bytes = 0
        self.last_flush = 0.0
        self.flush_now = False  # the pump is asked to send the buffer without waiting
        self.wake_sent = False
        self.fd_decoder = _utf8_decoder("replace")
        self.pipe_eof = False
        # Frames (send_lock: one whole frame at a time on fd 4).
        self.send_lock = _Lock()
        # Execution / interrupts (guarded by state_lock).
        self.state_lock = _Lock()
        self.exec_id = None  # cell an interrupt request may stop
        self.interrupt_requested = False
        self.kill_id = None  # cell the reader sent SIGINT for
        self.queued = set()  # execute requests received, not started
        self.early = set()  # of those, the ones interrupted already
        # Main thread only.
        self.running = False  # user code (or its compile/repr) is on the main thread's stack
        self.deferred = False  # an interrupt arrived while the driver was mid-frame: raise later
        self.in_child = False  # this process is a fork of the kernel
        self.future_flags = 0
        self.loop = None
        self.stdout = None
        self.stderr = None


S = _State()


def _diag(message):
    """The driver's own last words, on the original fd 2 (never the cell's output)."""
    try:
        data = ("runcell python driver: " + message + "\n").encode("utf-8", "replace")
        while data:
            data = data[_write(DIAG_FD, data) :]
    except BaseException:
        pass


def _fatal(message):
    _diag(message)
    _exit(70)


# --------------------------------------------------------------------------------------------
# Frames


def _send(message):
    """Writes one whole frame to fd 4. Exits if the server is gone."""
    try:
        body = _dumps(message).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: let JSON escape them
        body = _dumps_ascii(message).encode("ascii")
    data = memoryview(_pack_len(len(body)) + body)
    with S.send_lock:
        while data:
            try:
                data = data[_write(EVENT_FD, data) :]
            except InterruptedError:
                continue
            except OSError:
                _exit(1)


# --------------------------------------------------------------------------------------------
# Output


def _utf8_len(text):
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def _cut_utf8(text, limit):
    """Longest prefix of text that is at most limit UTF-8 bytes: (prefix, its byte length)."""
    if text.isascii():
        return text[:limit], min(limit, len(text))
    data = text.encode("utf-8", "surrogatepass")
    end = limit
    while end > 0 and end < len(data) and (data[end] & 0xC0) == 0x80:
        end -= 1
    return data[:end].decode("utf-8", "surrogatepass"), end


def _append_locked(name, text):
    """Accounts text against the cell's budget and buffers it. Caller holds out_lock."""
    n = len(text) if text.isascii() else _utf8_len(text)
    remaining = S.remaining
    if n > remaining:
        if remaining > 0:
            text, kept = _cut_utf8(text, remaining)
        else:
            text, kept = "", 0
        S.dropped += n - kept
        S.remaining = 0
        if not text:
            return
        n = kept
    else:
        S.remaining = remaining - n
    pending = S.pending
    if pending and pending[-1][0] == name:
        pending[-1][1].append(text)
    else:
        pending.append([name, [text]])
    S.pending_bytes += n
    if S.pending_bytes >= FLUSH_BYTES:
        _flush_locked()
    elif text.endswith("\n") and not S.flush_now and _monotonic() - S.last_flush >= FLUSH_INTERVAL:
        # Leading edge: a line after a quiet spell goes out at once (a cell that prints now and
        # then is seen live), sent by the pump so the cell's thread is not held up; a flood is
        # still batched, FLUSH_INTERVAL after the last send.
        S.flush_now = True
        S.wake_sent = True
        try:
            _write(WAKE_W, b"\0")
        except OSError:
            pass
    elif not S.wake_sent:
        S.wake_sent = True
        try:
            _write(WAKE_W, b"\0")
        except OSError:
            pass


def _flush_locked():
    """Sends the buffered output of the current cell. Caller holds out_lock."""
    pending = S.pending
    if not pending:
        return
    S.last_flush = _monotonic()
    S.flush_now = False
    S.pending = []
    S.pending_bytes = 0
    cell = S.cur_id
    if cell is None:
        return
    for name, chunks in pending:
        text = chunks[0] if len(chunks) == 1 else "".join(chunks)
        for start in range(0, len(text), FRAME_CHARS):
            _send({"type": "stream", "id": cell, "name": name, "text": text[start : start + FRAME_CHARS]})


def _drain_locked(limit):
    """Moves what is in the fd 1/2 pipe into the output buffer, up to about limit bytes.

    Caller holds out_lock. Without a running cell the data is read and discarded, so processes
    that outlive their cell never block on a full pipe.
    """
    total = 0
    while total < limit:
        try:
            data = _read(PIPE_R, 65536)
        except BlockingIOError:
            return
        except InterruptedError:
            continue
        except OSError:
            S.pipe_eof = True
            return
        if not data:
            S.pipe_eof = True
            return
        total += len(data)
        if S.cur_id is None:
            continue
        if S.remaining <= 0:
            S.dropped += len(data)
            continue
        text = S.fd_decoder.decode(data)
        if text:
            _append_locked("stdout", text)


def _emit(name, text):
    """Output written by Python code (any thread) through sys.stdout / sys.stderr."""
    with S.out_lock:
        if S.cur_id is None:
            return
        if S.remaining <= 0:
            S.dropped += _utf8_len(text)
            return
        # Keep order with output a subprocess already wrote to fd 1/2; not before print()'s own
        # separator and end, which belong to the text just written (a poll per write was a third
        # of what a flooding print cost).
        if text != "\n" and text != " " and not S.pipe_eof and PIPE_POLL.poll(0):
            _drain_locked(SYNC_DRAIN_BYTES)
        _append_locked(name, text)


def _child_write(fd, text):
    """In a forked child there is no pump and fd 4 is closed: write straight to fd 1/2."""
    data = text.encode("utf-8", "replace")
    try:
        while data:
            data = data[_write(fd, data) :]
    except OSError:
        pass


def _raise_deferred():
    if S.deferred and S.running and _get_ident() == MAIN_IDENT:
        S.deferred = False
        raise KeyboardInterrupt


class _WriteOnly:
    """What both writers answer about themselves: write-only, not a terminal, not seekable."""

    def isatty(self):
        return False

    def readable(self):
        return False

    def writable(self):
        return True

    def seekable(self):
        return False


class _BinaryWriter(_WriteOnly, io.BufferedIOBase):
    """``sys.stdout.buffer``: accepts bytes, decodes them as UTF-8 (errors='replace')."""

    def __init__(self, text_writer):
        super().__init__()
        self._text = text_writer
        self._decoder = _utf8_decoder("replace")

    def write(self, b):
        if isinstance(b, str):
            raise TypeError("a bytes-like object is required, not 'str'")
        view = memoryview(b)
        if self._text._closed:
            raise ValueError("write to closed file")
        text = self._decoder.decode(view.tobytes())
        if text:
            self._text.write(text)
        return view.nbytes

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        pass

    def close(self):
        self._text.close()

    @property
    def closed(self):
        return self._text._closed

    @property
    def raw(self):
        return self

    @property
    def name(self):
        return self._text.name

    @property
    def mode(self):
        return "wb"

    def fileno(self):
        return self._text.fileno()



class _TextWriter(_WriteOnly, io.TextIOBase):
    """sys.stdout / sys.stderr: text goes to the running cell as `stream` events."""

    encoding = "utf-8"
    errors = "strict"
    newlines = None
    line_buffering = False
    write_through = True
    mode = "w"

    def __init__(self, name, fd):
        super().__init__()
        self._stream = name
        self._fd = fd
        self._closed = False
        self._buffer = None

    def write(self, s):
        if type(s) is not str:
            if not isinstance(s, str):
                raise TypeError("write() argument must be str, not " + type(s).__name__)
            s = str.__str__(s)
        if self._closed:
            raise ValueError("I/O operation on closed file.")
        if s:
            if S.in_child:
                _child_write(self._fd, s)
            else:
                _emit(self._stream, s)
                if S.deferred:
                    _raise_deferred()
        return len(s)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        if self._closed:
            raise ValueError("I/O operation on closed file.")

    def close(self):
        self._closed = True

    @property
    def closed(self):
        return self._closed

    @property
    def buffer(self):
        if self._buffer is None:
            self._buffer = _BinaryWriter(self)
        return self._buffer

    @property
    def name(self):
        return "<" + self._stream + ">"

    def fileno(self):
        return self._fd


    def reconfigure(self, **kwargs):
        pass

    def __repr__(self):
        return "<runcell " + self._stream + ">"


def _pump():
    """Forwards the fd 1/2 pipe and flushes buffered output FLUSH_INTERVAL after it was written."""
    try:
        poller = select.poll()
        poller.register(PIPE_R, select.POLLIN)
        poller.register(WAKE_R, select.POLLIN)
        pipe_registered = True
        deadline = None
        while True:
            if deadline is None:
                events = poller.poll()
            else:
                events = poller.poll(max(0.0, (deadline - _monotonic()) * 1000.0))
            for fd, _mask in events:
                if fd == WAKE_R:
                    try:
                        _read(WAKE_R, 4096)
                    except OSError:
                        pass
                    if S.flush_now:
                        deadline = _monotonic()
                    elif deadline is None:
                        deadline = _monotonic() + FLUSH_INTERVAL
                elif pipe_registered:
                    with S.out_lock:
                        _drain_locked(SYNC_DRAIN_BYTES)
                        eof = S.pipe_eof
                    if eof:  # every write end closed (cells closed fds 1 and 2)
                        poller.unregister(PIPE_R)
                        pipe_registered = False
            if deadline is not None and _monotonic() >= deadline:
                with S.out_lock:
                    _flush_locked()
                    S.wake_sent = False
                deadline = None
    except BaseException as exc:
        _fatal("output thread failed: " + repr(exc))


# --------------------------------------------------------------------------------------------
# Requests and interrupts


def _reader():
    """Reads request frames from fd 3. EOF (the server is gone) ends the process."""
    try:
        buf = bytearray()
        while True:
            try:
                chunk = _read(REQUEST_FD, 1 << 16)
            except InterruptedError:
                continue
            except OSError:
                _exit(0)
            if not chunk:
                _exit(0)
            buf += chunk
            while len(buf) >= 4:
                (length,) = _unpack_len(buf, 0)
                if len(buf) < 4 + length:
                    break
                message = _loads(buf[4 : 4 + length])
                del buf[: 4 + length]
                _handle_request(message)
    except BaseException as exc:
        _fatal("request thread failed: " + repr(exc))


def _handle_request(message):
    kind = message.get("type")
    if kind == "execute":
        with S.state_lock:
            S.queued.add(message.get("id"))
        REQUESTS.put(message)
    elif kind == "input_reply":
        INPUTS.put(message)
    elif kind == "interrupt":
        with S.state_lock:
            cell = S.exec_id
            if cell is not None and cell == message.get("id"):
                S.interrupt_requested = True
                S.kill_id = cell
                _pthread_kill(MAIN_IDENT, _SIGINT)
            elif message.get("id") in S.queued:
                # Interrupted before it began (the request overtook the cell's start): it ends
                # as interrupted without running.
                S.early.add(message.get("id"))


def _on_sigint(signum, frame):
    """SIGINT handler: KeyboardInterrupt in user code, never in the middle of a frame write."""
    if not S.running:
        return  # between cells: nothing to interrupt
    killed = S.kill_id
    S.kill_id = None
    if killed is not None and killed != S.exec_id:
        return  # sent for a cell that has finished since
    f = frame
    while f is not None:
        if f.f_code in _CRITICAL_CODE:
            S.deferred = True  # raised when the driver code returns to the cell
            return
        f = f.f_back
    raise KeyboardInterrupt


_CRITICAL_CODE = {
    fn.__code__ for fn in (_send, _emit, _append_locked, _flush_locked, _drain_locked, _child_write)
}


def _after_fork_in_child():
    # The fork has no reader or pump thread; frames it wrote would corrupt the parent's stream.
    S.in_child = True
    S.out_lock = _Lock()
    S.send_lock = _Lock()
    S.state_lock = _Lock()
    S.pending = []
    for fd in (REQUEST_FD, EVENT_FD):
        try:
            os.close(fd)
        except OSError:
            pass
    # Forks run below the kernel: however many a cell makes (a fork bomb), the kernel still gets
    # the CPU to stop the cell when interrupted and report it, within its grace period.
    if not S.niced:
        S.niced = True
        try:
            os.nice(10)
        except OSError:
            pass


# --------------------------------------------------------------------------------------------
# Cells


def _input(prompt="", password=False):
    """input(): the server asks the notebook's interactive client for a line.

    Waits in the main thread, so an interrupt (or the cell's timeout) ends the wait with
    KeyboardInterrupt; a cell without an interactive client gets EOFError at once.
    """
    prompt = str(prompt)
    cell = S.cur_id
    with S.out_lock:
        _drain_locked(SYNC_DRAIN_BYTES)
        _flush_locked()  # what the cell printed before the prompt arrives before the request
    while not INPUTS.empty():  # replies meant for an earlier, interrupted request
        INPUTS.get_nowait()
    _send({"type": "input_request", "id": cell, "prompt": prompt, "password": bool(password)})
    reply = INPUTS.get()
    value = reply.get("value")
    if not isinstance(value, str):
        raise EOFError(reply.get("error") or "no input available")
    if not password:
        _emit("stdout", prompt + value + "\n")  # as a terminal would have echoed it
    return value


_REPR_METHODS = (
    ("_repr_html_", "text/html"),
    ("_repr_markdown_", "text/markdown"),
    ("_repr_svg_", "image/svg+xml"),
    ("_repr_png_", "image/png"),
    ("_repr_jpeg_", "image/jpeg"),
    ("_repr_json_", "application/json"),
    ("_repr_latex_", "text/latex"),
)


def _mime_bundle(obj):
    """(data, metadata) as IPython's display formatter builds them: text/plain always."""
    import base64

    data, metadata = {}, {}
    method = getattr(obj, "_repr_mimebundle_", None)
    if callable(method) and not isinstance(obj, type):
        bundle = method()
        if isinstance(bundle, tuple) and len(bundle) == 2:
            bundle, metadata = bundle
        if isinstance(bundle, dict):
            data.update(bundle)
    for name, mime in _REPR_METHODS:
        if mime in data or isinstance(obj, type):
            continue
        method = getattr(obj, name, None)
        if not callable(method):
            continue
        value = method()
        if isinstance(value, tuple) and len(value) == 2:
            value, metadata[mime] = value
        if value is None:
            continue
        if isinstance(value, (bytes, bytearray)):
            value = base64.b64encode(bytes(value)).decode("ascii")
        data[mime] = value
    if "text/plain" not in data:
        data["text/plain"] = repr(obj)
    return data, metadata if isinstance(metadata, dict) else {}


def _display(*objs, raw=False, metadata=None, **kwargs):
    """display() as in IPython: each object as a display_data output of the running cell."""
    for obj in objs:
        if raw and isinstance(obj, dict):
            data, meta = obj, metadata or {}
        else:
            data, meta = _mime_bundle(obj)
        _send_display(data, meta)


def _send_display(data, metadata):
    """Sends a display of the running cell, in order with its output, if it fits whole in what is
    left of the cell's output limit; else a line that says so (half an image is no image)."""
    # Counted as the server counts it: the JSON of the nbformat output.
    size = _utf8_len(_dumps({"output_type": "display_data", "data": data, "metadata": metadata}))
    with S.out_lock:
        if S.cur_id is None:
            return
        _drain_locked(SYNC_DRAIN_BYTES)
        if size > S.remaining:
            kinds = ", ".join(mime for mime in data if mime != "text/plain") or "text/plain"
            _append_locked(
                "stderr",
                "[%s output not shown: %d bytes, more than the %d bytes left of the cell's "
                "output limit of %d bytes]\n" % (kinds, size, S.remaining, S.max_output),
            )
            S.dropped += size
            return
        S.remaining -= size
        _flush_locked()  # the display goes after what the cell printed before it
        _send({"type": "display", "id": S.cur_id, "data": data, "metadata": metadata})


# --------------------------------------------------------------------------------------------
# Figures: what IPython's inline backend does, without importing matplotlib before a cell does.


def _show_figures(render=True):
    """Every open pyplot figure as an image/png display, then all closed: after each cell and at
    plt.show(). Runs as part of the cell (interruptible, its CPU time)."""
    helpers = sys.modules.get("matplotlib._pylab_helpers")
    if helpers is None or S.in_child:
        return
    managers = helpers.Gcf.get_all_fig_managers()
    if not managers:
        return
    import base64

    try:
        if not render or S.cur_id is None:
            return
        for manager in managers:
            figure = manager.canvas.figure
            try:
                png = io.BytesIO()
                figure.canvas.print_figure(png, format="png", bbox_inches="tight")
                text = repr(figure)
            except Exception as exc:
                _emit("stderr", "[figure not shown: %s: %s]\n" % (type(exc).__name__, exc))
                continue
            data = {"image/png": base64.b64encode(png.getvalue()).decode("ascii"), "text/plain": text}
            _send_display(data, {})
    finally:
        helpers.Gcf.destroy_all()


def _pyplot_show(*args, **kwargs):
    """plt.show(): the figures so far appear here, in order with the cell's output."""
    _show_figures()


class _PyplotLoader:
    """matplotlib.pyplot's own loader, with plt.show replaced once the module has run."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):  # get_source, get_filename, ... as the real loader answers
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        module.show = _pyplot_show
        if _PYPLOT_FINDER in sys.meta_path:
            sys.meta_path.remove(_PYPLOT_FINDER)  # its work is done: later imports skip it


class _PyplotFinder:
    """On sys.meta_path until matplotlib.pyplot is imported, so that even the cell that first
    imports it gets the displaying plt.show(); finds nothing for any other module."""

    def find_spec(self, name, path=None, target=None):
        if name != "matplotlib.pyplot":
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _PyplotLoader(spec.loader)
        return spec


_PYPLOT_FINDER = _PyplotFinder()


def _prepare_cell():
    """Undoes what a previous cell may have broken in the driver's environment."""
    out = S.stdout
    if out is None or out._closed:
        out = S.stdout = _TextWriter("stdout", 1)
    err = S.stderr
    if err is None or err._closed:
        err = S.stderr = _TextWriter("stderr", 2)
    sys.stdout = sys.__stdout__ = out
    sys.stderr = sys.__stderr__ = err
    if USER_NS.get("__builtins__") is not builtins:
        USER_NS["__builtins__"] = builtins
    if sys.modules.get("__main__") is not USER_MODULE:
        sys.modules["__main__"] = USER_MODULE
    if _getsignal(_SIGINT) is not _on_sigint:
        _signal(_SIGINT, _on_sigint)
    builtins.input = _input
    builtins.display = _display
    if "matplotlib.pyplot" not in sys.modules and _PYPLOT_FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _PYPLOT_FINDER)


def _suppressed(node, lines):
    """A trailing expression followed by ';' shows no value (as in IPython)."""
    try:
        line = lines[node.end_lineno - 1].encode("utf-8")
    except (IndexError, TypeError):
        return False
    return line[node.end_col_offset :].lstrip().startswith(b";")


def _compile_cell(code, filename, lines):
    """Returns (body code or None, trailing expression code or None)."""
    flags = _TOP_LEVEL_AWAIT | S.future_flags
    tree = compile(code, filename, "exec", _ast_parse_flags | flags, True)
    body = tree.body
    has_future = False
    for node in body[:4]:
        if isinstance(node, _ast_ImportFrom) and node.module == "__future__":
            has_future = True
    last = None
    if body and isinstance(body[-1], _ast_Expr) and not _suppressed(body[-1], lines):
        last = body.pop()
    body_code = compile(tree, filename, "exec", flags, True) if body else None
    last_code = None
    if last is not None:
        last_code = compile(_ast_Expression(last.value), filename, "eval", flags, True)
    if has_future and body_code is not None:
        for flag in _FUTURE_FLAGS:
            if body_code.co_flags & flag:
                S.future_flags |= flag
    return body_code, last_code


def _run_coroutine(coro):
    import asyncio

    loop = S.loop
    if loop is None or loop.is_closed():
        loop = S.loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    task = loop.create_task(coro)
    try:
        return loop.run_until_complete(task)
    finally:
        if not task.done():
            task.cancel()
        elif not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" log later


def _run_user(body_code, last_code):
    """Runs a compiled cell: (value, has_value)."""
    ns = USER_NS
    if body_code is not None:
        if body_code.co_flags & CO_COROUTINE:
            _run_coroutine(eval(body_code, ns))
        else:
            eval(body_code, ns)
    if last_code is None:
        return None
    if last_code.co_flags & CO_COROUTINE:
        return _run_coroutine(eval(last_code, ns))
    return eval(last_code, ns)


def _strip_driver_frames(exc):
    """Removes the driver's frames from exc's traceback (and its causes/contexts/group members)."""
    seen = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen or not isinstance(e, BaseException):
            continue
        seen.add(id(e))
        tb = e.__traceback__
        if tb is not None:
            from_driver = tb.tb_frame.f_globals is DRIVER_GLOBALS
            entries = []
            t = tb
            while t is not None:
                if t.tb_frame.f_globals is not DRIVER_GLOBALS:
                    entries.append(t)
                t = t.tb_next
            if from_driver:
                # Frames between the driver and the first cell frame are machinery (asyncio).
                for i, t in enumerate(entries):
                    if t.tb_frame.f_code.co_filename.startswith(CELL_PREFIX):
                        entries = entries[i:]
                        break
            new = None
            for t in reversed(entries):
                new = _TracebackType(new, t.tb_frame, t.tb_lasti, t.tb_lineno)
            e.__traceback__ = new
        todo.append(e.__cause__)
        todo.append(e.__context__)
        if isinstance(e, _BaseExceptionGroup):
            group = getattr(e, "exceptions", None)
            if isinstance(group, tuple):
                todo.extend(group)


def _cap_text(text, limit):
    if len(text) <= limit:
        return text
    return text[:limit] + "… [truncated]\n"


def _error_fields(exc):
    ename = type(exc).__name__
    try:
        evalue = str(exc)
    except BaseException:
        evalue = "<exception str() failed>"
    try:
        _strip_driver_frames(exc)
        sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, exc.__traceback__
        import traceback

        _sync_linecache(force=True)
        lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
        budget = MAX_TRACEBACK_CHARS
        tb = []
        for line in lines:
            if budget <= 0:
                tb.append("… [traceback truncated]\n")
                break
            line = _cap_text(line, budget)
            budget -= len(line)
            tb.append(line)
    except BaseException:
        tb = [ename + ": " + evalue + "\n"]
    return {"ename": ename, "evalue": _cap_text(evalue, MAX_TRACEBACK_CHARS), "traceback": tb}


def _sync_linecache(force=False):
    """Gives linecache the cells' sources, once it is loaded (by a failing cell, or user code)."""
    global _sources_synced
    linecache = sys.modules.get("linecache")
    if linecache is None or (_sources_synced == len(_SOURCES) and not force):
        return
    try:
        linecache.cache.update(_SOURCES)
        _sources_synced = len(_SOURCES)
    except BaseException:
        pass  # a cell replaced linecache: its tracebacks lose their source lines


def _run_cell(request):
    cell = request.get("id")
    code = request.get("code")
    if not isinstance(code, str):
        code = ""
    cap = request.get("maxOutputBytes")
    if not isinstance(cap, int) or cap < 0:
        cap = DEFAULT_MAX_OUTPUT
    filename = CELL_PREFIX + str(cell) + ">"
    lines = _StringIO(code, None).readlines()  # line breaks as the tokenizer counts them
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"  # as linecache does for files (traceback's caret columns rely on it)
    _SOURCES[filename] = (len(code), None, lines, filename)
    _sync_linecache()
    _prepare_cell()
    with S.out_lock:
        S.cur_id = cell
        S.remaining = S.max_output = cap
        S.dropped = 0
        S.pending = []
        S.pending_bytes = 0
        S.fd_decoder = _utf8_decoder("replace")
    S.deferred = False
    with S.state_lock:
        S.exec_id = cell
        S.queued.discard(cell)
        S.interrupt_requested = cell in S.early
        S.early.discard(cell)
        skip = S.interrupt_requested

    value = None
    rich = None
    error = None
    try:
        if skip:
            raise KeyboardInterrupt
        S.running = True
        try:
            body_code, last_code = _compile_cell(code, filename, lines)
            try:
                result = _run_user(body_code, last_code)
            finally:
                # As IPython's inline backend, after a failed cell too; an interrupted one is
                # to stop now, so its figures are dropped unrendered.
                _show_figures(render=not S.interrupt_requested)
            if result is not None:
                bundle, bundle_meta = _mime_bundle(result)
                value = bundle["text/plain"]
                if not isinstance(value, str):
                    raise TypeError("__repr__ returned non-string")
                if len(bundle) > 1:
                    rich = (bundle, bundle_meta)
        finally:
            S.running = False
        if S.deferred:
            raise KeyboardInterrupt
    except BaseException as exc:
        S.running = False
        error = exc
    if S.in_child:  # a fork that returned from the cell: it has no server to answer
        _exit(1 if error is not None else 0)
    with S.state_lock:
        S.exec_id = None
        interrupted = S.interrupt_requested

    if error is not None:
        message = {"type": "result", "id": cell, "status": "error"}
        message.update(_error_fields(error))
        if interrupted:
            message["interrupted"] = True
        error = None  # drop the frames' references before the next cell
    else:
        message = {"type": "result", "id": cell, "status": "ok", "value": value}
        if rich is not None:
            message["data"], message["metadata"] = rich
        if value is not None:
            limit = min(cap, MAX_VALUE_BYTES)
            n = _utf8_len(value)
            if n > limit:
                message["value"], kept = _cut_utf8(value, limit)
                message["dropped"] = n - kept
    with S.out_lock:
        _drain_locked(SYNC_DRAIN_BYTES)
        _flush_locked()
        dropped = S.dropped + message.get("dropped", 0)
        if dropped:
            message["dropped"] = dropped
        _send(message)
        S.cur_id = None
        S.pending = []
        S.pending_bytes = 0


def _preload_traceback():
    import traceback  # noqa: F401  (and linecache with it)

    _sync_linecache(force=True)


def _main():
    _signal(_SIGINT, _on_sigint)
    os.register_at_fork(after_in_child=_after_fork_in_child)
    _prepare_cell()
    _thread.start_new_thread(_pump, ())
    _send({"type": "ready", "language": "python", "version": "%d.%d.%d" % sys.version_info[:3]})
    _thread.start_new_thread(_reader, ())
    # Loaded off the start path, but early: a failing cell must not pay for (or, under a fork
    # bomb, wait on) the import of traceback and linecache before its error can be reported.
    _thread.start_new_thread(_preload_traceback, ())
    get = REQUESTS.get
    while True:
        request = get()
        try:
            _run_cell(request)
        except BaseException as exc:
            _fatal("cell " + repr(request.get("id")) + " failed in the driver: " + repr(exc))


# --------------------------------------------------------------------------------------------
# Start-up

# The driver's own diagnostics keep the original fd 2; the original fd 1 stays open (unused) so
# the server does not see it close.
DIAG_FD = os.dup(2)
_ORIGINAL_STDOUT_FD = os.dup(1)
faulthandler.enable(file=DIAG_FD, all_threads=True)
PIPE_R, _pipe_w = os.pipe()
os.dup2(_pipe_w, 1)
os.dup2(_pipe_w, 2)
os.close(_pipe_w)
os.set_blocking(PIPE_R, False)
PIPE_POLL = select.poll()
PIPE_POLL.register(PIPE_R, select.POLLIN)
WAKE_R, WAKE_W = os.pipe()
os.set_blocking(WAKE_R, False)
os.set_blocking(WAKE_W, False)
# Processes the cells start must not hold (or scribble on) the frame channels.
for _fd in (REQUEST_FD, EVENT_FD):
    try:
        os.set_inheritable(_fd, False)
    except OSError:
        pass
REQUESTS = _queue.SimpleQueue()
INPUTS = _queue.SimpleQueue()  # input_reply messages, for _input on the main thread

USER_MODULE = types.ModuleType("__main__")
USER_NS = USER_MODULE.__dict__
USER_NS["__builtins__"] = builtins
sys.modules["__main__"] = USER_MODULE
# The server passes the sandbox's memory limit. Python cannot see the cgroup limit, so without
# this a big allocation gets the whole kernel OOM-killed; with the address space capped below it,
# the allocation fails with MemoryError and the notebook keeps its context.
if len(sys.argv) > 1 and sys.argv[1].isdigit():
    import resource

    _limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (_limit, _limit))
sys.argv = [""]
# What site would add (-S skips it, with the .pth hooks it runs at every start): the system's
# package directories, so Debian's python3-* packages import.
_version = "%d.%d" % sys.version_info[:2]
for _dir in (
    "/usr/local/lib/python" + _version + "/dist-packages",
    "/usr/lib/python3/dist-packages",
    "/usr/lib/python" + _version + "/dist-packages",
):
    if os.path.isdir(_dir):
        sys.path.append(_dir)
# Like Jupyter: modules in the notebook's workspace (the working directory) are importable.
sys.path.insert(0, "")

_main()
