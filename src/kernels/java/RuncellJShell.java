// runcell Java kernel driver: one persistent JShell context, driven through the jdk.jshell API
// with the in-process ("local") execution engine, so a kernel is a single JVM.
//
// Threads:
//  - main: runs cells one at a time (JShell.eval is not thread-safe; only stop() may be called
//    from elsewhere). Each snippet runs in a fresh thread of JShell's own.
//  - runcell-requests: reads frames from fd 3, queues execute requests, handles interrupts.
//  - runcell-output: sends buffered stream text (at most 20 ms late, and always before the result).
//  - runcell-interrupt: repeats JShell.stop() until the interrupted cell ends: a stop that lands
//    while JShell is still compiling (before user code runs) does nothing.
//
// The protocol is docs/kernel-protocol.md: 4-byte big-endian length + UTF-8 JSON; fd 3 carries
// requests, fd 4 events. Neither is System.out/System.err, which the driver replaces with
// capturing streams: user code that prints cannot forge a frame.

import java.io.DataInputStream;
import java.io.EOFException;
import java.io.FileDescriptor;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.lang.reflect.Field;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.stream.Collectors;
import jdk.jshell.Diag;
import jdk.jshell.EvalException;
import jdk.jshell.ExpressionSnippet;
import jdk.jshell.JShell;
import jdk.jshell.JShellException;
import jdk.jshell.Snippet;
import jdk.jshell.SnippetEvent;
import jdk.jshell.SourceCodeAnalysis;
import jdk.jshell.UnresolvedReferenceException;
import jdk.jshell.VarSnippet;

public final class RuncellJShell {

  static final int REQUEST_FD = 3;
  static final int EVENT_FD = 4;
  static final int MAX_REQUEST_BYTES = 64 << 20;
  static final int FLUSH_BYTES = 64 * 1024;
  static final long FLUSH_NANOS = 20_000_000L;
  /** Stream text per frame, far below the server's 64 MiB frame limit (≤ 3 UTF-8 bytes a char). */
  static final int FRAME_CHARS = 1 << 20;
  static final long DEFAULT_MAX_OUTPUT = 16 << 20;
  /** A cell's value and error text are capped on their own (besides maxOutputBytes). */
  static final int MAX_VALUE_BYTES = 8 << 20;
  static final int MAX_TRACEBACK_LINES = 200;
  static final String OOM = "java.lang.OutOfMemoryError";
  /** jshell's DEFAULT startup: what a Java REPL user expects to be imported. */
  static final String[] STARTUP_IMPORTS = {
    "java.io.*",
    "java.math.*",
    "java.net.*",
    "java.nio.file.*",
    "java.util.*",
    "java.util.concurrent.*",
    "java.util.function.*",
    "java.util.prefs.*",
    "java.util.regex.*",
    "java.util.stream.*",
  };

  public static void main(String[] args) throws Exception {
    Events events = new Events(new FileOutputStream(descriptor(EVENT_FD)));
    DataInputStream requests = new DataInputStream(new FileInputStream(descriptor(REQUEST_FD)));
    Output output = new Output(events);
    Capture stdout = new Capture(output, "stdout");
    Capture stderr = new Capture(output, "stderr");
    PrintStream out = new PrintStream(stdout, true, StandardCharsets.UTF_8);
    PrintStream err = new PrintStream(stderr, true, StandardCharsets.UTF_8);
    InputStream noInput = InputStream.nullInputStream();
    // User code runs in this JVM: its System.out/err are ours; the real fds 1/2 stay for the
    // JVM's own last words (crash reports), which the server shows as diagnostics.
    System.setOut(out);
    System.setErr(err);
    System.setIn(noInput);
    JShell shell = JShell.builder().executionEngine("local").out(out).err(err).in(noInput).build();
    for (String name : STARTUP_IMPORTS) shell.eval("import " + name + ";");
    Kernel kernel = new Kernel(shell, output, stdout, stderr);
    Thread flusher = new Thread(output::pump, "runcell-output");
    flusher.setDaemon(true);
    flusher.start();
    Thread stopper = new Thread(kernel.interrupts::pump, "runcell-interrupt");
    stopper.setDaemon(true);
    stopper.start();
    Map<String, Object> ready = new LinkedHashMap<>();
    ready.put("type", "ready");
    ready.put("language", "java");
    ready.put("version", System.getProperty("java.version"));
    events.send(ready);
    Thread reader = new Thread(() -> kernel.readRequests(requests), "runcell-requests");
    reader.setDaemon(true);
    reader.start();
    kernel.runCells();
  }

  /**
   * The inherited fd as a FileDescriptor. fds 3 and 4 are sockets (Node's stdio pipes), which
   * /proc/self/fd/N cannot reopen, and Java has no public API for a raw fd: the launcher opens
   * java.io to this class (--add-opens). That gives user code nothing new: it runs in the same
   * JVM with full reflective power anyway; the sandbox is the boundary.
   */
  static FileDescriptor descriptor(int fd) throws ReflectiveOperationException {
    FileDescriptor descriptor = new FileDescriptor();
    Field field = FileDescriptor.class.getDeclaredField("fd");
    field.setAccessible(true);
    field.setInt(descriptor, fd);
    return descriptor;
  }

  /**
   * Ends the kernel at once (no user shutdown hooks), with last words on the real fd 2 for the
   * server's diagnostics: a broken channel leaves nothing else to do.
   */
  static void die(String why) {
    new PrintStream(new FileOutputStream(FileDescriptor.err), true, StandardCharsets.UTF_8).println(
      "runcell java driver: " + why
    );
    Runtime.getRuntime().halt(1);
  }

  static int utf8Length(CharSequence text) {
    int n = 0;
    for (int i = 0; i < text.length(); i++) {
      char c = text.charAt(i);
      if (c < 0x80) n += 1;
      else if (c < 0x800) n += 2;
      else if (
        Character.isHighSurrogate(c) && i + 1 < text.length() && Character.isLowSurrogate(text.charAt(i + 1))
      ) {
        n += 4;
        i++;
      } else n += 3;
    }
    return n;
  }

  /** Longest prefix of text that is at most limit UTF-8 bytes, never splitting a pair. */
  static String cutUtf8(String text, long limit) {
    long n = 0;
    for (int i = 0; i < text.length(); i++) {
      char c = text.charAt(i);
      int width = 1;
      int size = c < 0x80 ? 1 : c < 0x800 ? 2 : 3;
      if (
        Character.isHighSurrogate(c) && i + 1 < text.length() && Character.isLowSurrogate(text.charAt(i + 1))
      ) {
        width = 2;
        size = 4;
      }
      if (n + size > limit) return text.substring(0, i);
      n += size;
      i += width - 1;
    }
    return text;
  }

  // -------------------------------------------------------------------------------------------
  // Cells

  static final class Kernel {

    final JShell shell;
    final SourceCodeAnalysis analysis;
    final Output output;
    final Capture stdout;
    final Capture stderr;
    final Interrupts interrupts;
    final LinkedBlockingQueue<Map<String, Object>> queue = new LinkedBlockingQueue<>();
    /**
     * Heap held back for JShell's compiler: dropped when a cell fills the heap, so that the next
     * cell can still be compiled (and free what the variables of the last one hold).
     */
    byte[] reserve = newReserve();
    /** Where each snippet came from, to show stack frames as cell lines: id → [cell, line]. */
    final Map<String, long[]> origins = new HashMap<>();

    Kernel(JShell shell, Output output, Capture stdout, Capture stderr) {
      this.shell = shell;
      this.analysis = shell.sourceCodeAnalysis();
      this.output = output;
      this.stdout = stdout;
      this.stderr = stderr;
      this.interrupts = new Interrupts(shell);
    }

    void readRequests(DataInputStream in) {
      try {
        for (;;) {
          int length = in.readInt();
          if (length < 0 || length > MAX_REQUEST_BYTES) die("request frame of " + length + " bytes");
          byte[] body = new byte[length];
          in.readFully(body);
          Object parsed;
          try {
            parsed = Json.parse(new String(body, StandardCharsets.UTF_8));
          } catch (IllegalArgumentException e) {
            continue; // not ours to interpret: the server only sends well-formed requests
          }
          if (!(parsed instanceof Map)) continue;
          @SuppressWarnings("unchecked")
          Map<String, Object> request = (Map<String, Object>) parsed;
          Object type = request.get("type");
          if (!(request.get("id") instanceof Long)) continue;
          long id = (Long) request.get("id");
          if ("execute".equals(type)) {
            interrupts.queued(id);
            queue.add(request);
          } else if ("interrupt".equals(type)) {
            interrupts.request(id);
          }
        }
      } catch (EOFException e) {
        die("the server closed the request channel");
      } catch (IOException e) {
        die("cannot read requests: " + e);
      }
    }

    static byte[] newReserve() {
      long size = Math.max(4 << 20, Math.min(32 << 20, Runtime.getRuntime().maxMemory() / 16));
      try {
        return new byte[(int) size];
      } catch (OutOfMemoryError e) {
        return null;
      }
    }

    void runCells() throws InterruptedException {
      for (;;) runCell(queue.take());
    }

    void runCell(Map<String, Object> request) {
      long id = (Long) request.get("id");
      String code = request.get("code") instanceof String ? (String) request.get("code") : "";
      long cap =
        request.get("maxOutputBytes") instanceof Long && (Long) request.get("maxOutputBytes") >= 0
          ? (Long) request.get("maxOutputBytes")
          : DEFAULT_MAX_OUTPUT;
      output.begin(id, cap);
      interrupts.begin(id);
      Map<String, Object> result;
      try {
        result = evaluate(id, code);
      } catch (OutOfMemoryError e) {
        reserve = null;
        result = error(
          OOM,
          "Java heap space: no memory was left to compile and run the cell (variables of" +
            " earlier cells may hold it: set them to null)",
          List.of()
        );
      } catch (RuntimeException | Error e) {
        result = error("InternalError", "the kernel failed to run the cell: " + e, List.of());
      }
      if (OOM.equals(result.get("ename"))) reserve = null;
      else if (reserve == null) reserve = newReserve();
      if (interrupts.end()) {
        result = error(
          "Interrupted",
          "the cell was interrupted",
          List.of("Interrupted: the cell was interrupted")
        );
        result.put("interrupted", true);
      }
      result.put("type", "result");
      result.put("id", id);
      // Output still in a decoder (a cut UTF-8 sequence) belongs to this cell.
      stdout.finish();
      stderr.finish();
      output.finish(result, cap);
    }

    /** Runs the cell snippet by snippet; stops at the first error or interrupt. */
    Map<String, Object> evaluate(long cell, String code) {
      String rest = code;
      int offset = 0; // index in code where rest starts
      Map<String, Object> ok = new LinkedHashMap<>();
      ok.put("status", "ok");
      ok.put("value", null);
      while (!interrupts.requested()) {
        SourceCodeAnalysis.CompletionInfo info = analysis.analyzeCompletion(rest);
        SourceCodeAnalysis.Completeness completeness = info.completeness();
        if (completeness == SourceCodeAnalysis.Completeness.EMPTY) break;
        String source;
        String remaining;
        if (completeness.isComplete()) {
          source = info.source();
          remaining = info.remaining();
        } else {
          // Incomplete or unparseable: JShell reports why when asked to evaluate it.
          source = rest;
          remaining = "";
        }
        // source is a prefix of rest (plus, at most, a ';' JShell adds). Its leading blank lines
        // go: JShell's stack-trace line numbers ignore them (diagnostics and comments do not).
        int blank = 0;
        while (blank < source.length() && Character.isWhitespace(source.charAt(blank))) blank++;
        blank = source.lastIndexOf('\n', blank - 1) + 1;
        source = source.substring(blank);
        int start = offset + blank;
        ok.put("value", null);
        for (SnippetEvent event : shell.eval(source)) {
          if (event.causeSnippet() != null) continue; // a dependent snippet's update
          Snippet snippet = event.snippet();
          origins.put(snippet.id(), new long[] { cell, lineOf(code, start) });
          if (event.status() == Snippet.Status.REJECTED) {
            return compileError(cell, snippet, code, start);
          }
          JShellException exception = event.exception();
          if (exception != null) {
            if (interrupts.requested()) return ok; // InterruptedException etc.: the interrupt's doing
            return runtimeError(exception);
          }
          if (isValue(snippet)) ok.put("value", event.value());
        }
        offset += rest.length() - remaining.length();
        rest = remaining;
      }
      return ok;
    }

    /** 0-based line of index in text. */
    static long lineOf(String text, int index) {
      long line = 0;
      for (int i = 0; i < index && i < text.length(); i++) if (text.charAt(i) == '\n') line++;
      return line;
    }

    /** An expression the cell ends with (`1 + 1`, `x`, `s = "a"`): not a declaration or void. */
    static boolean isValue(Snippet snippet) {
      switch (snippet.subKind()) {
        case TEMP_VAR_EXPRESSION_SUBKIND:
          return !"void".equals(((VarSnippet) snippet).typeName());
        case VAR_VALUE_SUBKIND:
        case ASSIGNMENT_SUBKIND:
        case OTHER_EXPRESSION_SUBKIND:
          return (
            snippet instanceof ExpressionSnippet && !"void".equals(((ExpressionSnippet) snippet).typeName())
          );
        default:
          return false;
      }
    }

    /** The snippet's errors as javac shows them, at their lines in the cell (start: its index). */
    Map<String, Object> compileError(long cell, Snippet snippet, String code, int start) {
      List<Diag> errors = shell.diagnostics(snippet).filter(Diag::isError).collect(Collectors.toList());
      String label = "<cell-" + cell + ">";
      String[] codeLines = code.split("\n", -1);
      List<String> traceback = new ArrayList<>();
      String evalue = null;
      for (Diag diag : errors) {
        long position = diag.getPosition();
        int at = Math.min(code.length(), start + (int) Math.max(0, position));
        int line = (int) lineOf(code, at);
        int column = at - (code.lastIndexOf('\n', at - 1) + 1);
        String[] message = diag.getMessage(Locale.ROOT).split("\n");
        if (evalue == null) evalue = message[0] + " (" + label + ", line " + (line + 1) + ")";
        traceback.add(label + ":" + (line + 1) + ": error: " + message[0]);
        traceback.add(codeLines[line]);
        if (position >= 0) traceback.add(" ".repeat(column) + "^");
        for (int i = 1; i < message.length; i++) traceback.add(message[i]);
      }
      if (evalue == null) {
        int line = (int) lineOf(code, start) + 1;
        evalue = "the snippet was rejected (" + label + ", line " + line + ")";
        traceback.add(label + ":" + line + ": error: the snippet was rejected");
      }
      return error("CompilationError", evalue, traceback);
    }

    Map<String, Object> runtimeError(JShellException exception) {
      String ename;
      String evalue;
      if (exception instanceof EvalException) {
        ename = ((EvalException) exception).getExceptionClassName();
        evalue = exception.getMessage() == null ? "" : exception.getMessage();
      } else {
        ename = "UnresolvedReferenceException";
        evalue = describe((UnresolvedReferenceException) exception);
      }
      List<String> traceback = new ArrayList<>();
      Set<Throwable> seen = new HashSet<>();
      for (Throwable t = exception; t != null && seen.add(t); t = t.getCause()) {
        traceback.add(
          t != exception ? "Caused by: " + headline(t) : evalue.isEmpty() ? ename : ename + ": " + evalue
        );
        for (StackTraceElement frame : t.getStackTrace()) {
          if (traceback.size() >= MAX_TRACEBACK_LINES) {
            traceback.add("\t...");
            return error(ename, evalue, traceback);
          }
          traceback.add("\tat " + frame(frame));
        }
      }
      return error(ename, evalue, traceback);
    }

    String describe(UnresolvedReferenceException e) {
      jdk.jshell.DeclarationSnippet snippet = e.getSnippet();
      String missing = shell.unresolvedDependencies(snippet).collect(Collectors.joining(", "));
      return (
        snippet.subKind().toString().toLowerCase(Locale.ROOT).replace("_subkind", "") +
        " '" +
        snippet.name() +
        "' cannot be used until " +
        missing +
        " is declared"
      );
    }

    static String headline(Throwable t) {
      String name =
        t instanceof EvalException
          ? ((EvalException) t).getExceptionClassName()
          : t instanceof UnresolvedReferenceException
            ? "UnresolvedReferenceException"
            : t.getClass().getName();
      return t.getMessage() == null ? name : name + ": " + t.getMessage();
    }

    /** A frame as Java prints it, with a snippet's "#id:line" turned into the cell's line. */
    String frame(StackTraceElement frame) {
      String klass = frame.getClassName();
      String method = frame.getMethodName();
      String where = klass.isEmpty() ? method : method.isEmpty() ? klass : klass + "." + method;
      String file = frame.getFileName();
      long[] origin = file != null && file.startsWith("#") ? origins.get(file.substring(1)) : null;
      if (origin != null) {
        return where + "(<cell-" + origin[0] + ">:" + (origin[1] + frame.getLineNumber()) + ")";
      }
      return frame.toString();
    }

    static Map<String, Object> error(String ename, String evalue, List<String> traceback) {
      Map<String, Object> m = new LinkedHashMap<>();
      m.put("status", "error");
      m.put("ename", ename);
      m.put("evalue", cutUtf8(evalue, MAX_VALUE_BYTES));
      m.put("traceback", traceback);
      return m;
    }
  }

  /** Interrupt state shared by the request reader, the main thread and the stop pump. */
  static final class Interrupts {

    final JShell shell;
    final Set<Long> queued = new HashSet<>();
    final Set<Long> early = new HashSet<>();
    long running = -1;
    boolean requested;

    Interrupts(JShell shell) {
      this.shell = shell;
    }

    synchronized void queued(long id) {
      queued.add(id);
    }

    /** An interrupt for a queued cell that has not started yet stops it before it runs. */
    synchronized void request(long id) {
      if (id == running) {
        requested = true;
        notifyAll();
      } else if (queued.contains(id)) {
        early.add(id);
      }
    }

    synchronized void begin(long id) {
      queued.remove(id);
      running = id;
      requested = early.remove(id);
    }

    synchronized boolean requested() {
      return requested;
    }

    /** The cell is over; whether it was interrupted. */
    synchronized boolean end() {
      running = -1;
      boolean was = requested;
      requested = false;
      return was;
    }

    void pump() {
      for (;;) {
        synchronized (this) {
          while (!(requested && running >= 0)) waitQuietly(0);
        }
        try {
          shell.stop();
        } catch (RuntimeException e) {
          // nothing running yet, or already over: try again below until the cell ends
        }
        synchronized (this) {
          waitQuietly(50);
        }
      }
    }

    private void waitQuietly(long ms) {
      try {
        wait(ms);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Output

  /** System.out or System.err of the user's code: bytes decoded as UTF-8 into the cell's output. */
  static final class Capture extends OutputStream {

    final Output output;
    final String name;
    final CharsetDecoder decoder = StandardCharsets.UTF_8.newDecoder()
      .onMalformedInput(CodingErrorAction.REPLACE)
      .onUnmappableCharacter(CodingErrorAction.REPLACE);
    final CharBuffer chars = CharBuffer.allocate(8192);
    /** The incomplete UTF-8 sequence a write ended with (at most 3 bytes), for the next one. */
    final ByteBuffer tail = ByteBuffer.allocate(4);

    Capture(Output output, String name) {
      this.output = output;
      this.name = name;
    }

    @Override
    public void write(int b) {
      write(new byte[] { (byte) b }, 0, 1);
    }

    @Override
    public synchronized void write(byte[] b, int off, int len) {
      ByteBuffer in = ByteBuffer.wrap(b, off, len);
      if (tail.position() > 0) {
        tail.flip();
        in = ByteBuffer.allocate(tail.remaining() + len)
          .put(tail)
          .put(b, off, len)
          .flip();
        tail.clear();
      }
      decode(in, false);
      tail.put(in);
    }

    /** End of the cell: an unfinished UTF-8 sequence becomes U+FFFD. */
    synchronized void finish() {
      tail.flip();
      decode(tail, true);
      decoder.flush(chars);
      drain();
      decoder.reset();
      tail.clear();
    }

    private void decode(ByteBuffer in, boolean end) {
      while (decoder.decode(in, chars, end).isOverflow()) drain();
      drain();
    }

    private void drain() {
      chars.flip();
      if (chars.hasRemaining()) output.append(name, chars.toString());
      chars.clear();
    }
  }

  /** The running cell's stream text: budgeted, batched, and always sent before its result. */
  static final class Output {

    final Events events;
    long cell = -1; // -1: between cells, output is dropped
    long remaining;
    long dropped;
    final List<Object[]> pending = new ArrayList<>(); // [name, StringBuilder]
    long pendingBytes;
    long pendingSince;
    long lastFlush;
    boolean flushNow;

    Output(Events events) {
      this.events = events;
    }

    synchronized void begin(long id, long cap) {
      cell = id;
      remaining = cap;
      dropped = 0;
      pending.clear();
      pendingBytes = 0;
    }

    synchronized void append(String name, String text) {
      if (cell < 0) return;
      int n = utf8Length(text);
      if (n > remaining) {
        String kept = cutUtf8(text, remaining);
        int k = utf8Length(kept);
        dropped += n - k;
        remaining = 0;
        if (kept.isEmpty()) return;
        text = kept;
        n = k;
      } else {
        remaining -= n;
      }
      Object[] last = pending.isEmpty() ? null : pending.get(pending.size() - 1);
      if (last != null && last[0].equals(name)) {
        ((StringBuilder) last[1]).append(text);
      } else {
        pending.add(new Object[] { name, new StringBuilder(text) });
      }
      long now = System.nanoTime();
      if (pendingBytes == 0) pendingSince = now;
      pendingBytes += n;
      if (pendingBytes >= FLUSH_BYTES) {
        flushLocked();
      } else {
        // Leading edge: a line after a quiet spell goes out at once, sent by the pump so the
        // cell's thread is not held up; a flood is still batched.
        if (text.endsWith("\n") && now - lastFlush >= FLUSH_NANOS) flushNow = true;
        notifyAll();
      }
    }

    void pump() {
      synchronized (this) {
        for (;;) {
          try {
            if (pending.isEmpty()) {
              wait();
              continue;
            }
            long wait = flushNow ? 0 : pendingSince + FLUSH_NANOS - System.nanoTime();
            if (wait > 0) {
              wait(Math.max(1, wait / 1_000_000));
              continue;
            }
            flushLocked();
          } catch (InterruptedException e) {
            return;
          }
        }
      }
    }

    private void flushLocked() {
      lastFlush = System.nanoTime();
      flushNow = false;
      for (Object[] part : pending) {
        String text = part[1].toString();
        for (int start = 0; start < text.length(); ) {
          int end = Math.min(text.length(), start + FRAME_CHARS);
          if (end < text.length() && Character.isHighSurrogate(text.charAt(end - 1))) end--;
          Map<String, Object> m = new LinkedHashMap<>();
          m.put("type", "stream");
          m.put("id", cell);
          m.put("name", part[0]);
          m.put("text", text.substring(start, end));
          events.send(m);
          start = end;
        }
      }
      pending.clear();
      pendingBytes = 0;
    }

    /** Sends what is pending, then the result; later output of this cell is dropped. */
    synchronized void finish(Map<String, Object> result, long cap) {
      flushLocked();
      long extra = 0;
      if (result.get("value") instanceof String) {
        String value = (String) result.get("value");
        String kept = cutUtf8(value, Math.min(cap, MAX_VALUE_BYTES));
        if (kept.length() < value.length()) {
          extra = utf8Length(value) - utf8Length(kept);
          result.put("value", kept);
        }
      }
      if (dropped + extra > 0) result.put("dropped", dropped + extra);
      events.send(result);
      cell = -1;
    }
  }

  /** fd 4: whole frames, one writer at a time. */
  static final class Events {

    final OutputStream out;

    Events(OutputStream out) {
      this.out = out;
    }

    synchronized void send(Map<String, Object> message) {
      byte[] body = Json.write(message).getBytes(StandardCharsets.UTF_8);
      byte[] frame = new byte[4 + body.length];
      ByteBuffer.wrap(frame).putInt(body.length).put(body);
      try {
        out.write(frame);
      } catch (IOException e) {
        die("cannot send events: " + e);
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // JSON (no library in the JDK): enough for the protocol's messages, strictly correct.

  static final class Json {

    private final String s;
    private int i;

    private Json(String s) {
      this.s = s;
    }

    /** Objects → Map, arrays → List, integers → Long, other numbers → Double. */
    static Object parse(String text) {
      Json p = new Json(text);
      p.space();
      Object value = p.value(0);
      p.space();
      if (p.i != text.length()) throw p.fail("trailing characters");
      return value;
    }

    private IllegalArgumentException fail(String why) {
      return new IllegalArgumentException("bad JSON at " + i + ": " + why);
    }

    private void space() {
      while (i < s.length() && " \t\r\n".indexOf(s.charAt(i)) >= 0) i++;
    }

    private char next() {
      if (i >= s.length()) throw fail("unexpected end");
      return s.charAt(i++);
    }

    private void expect(String word) {
      if (!s.startsWith(word, i)) throw fail("expected " + word);
      i += word.length();
    }

    private Object value(int depth) {
      if (depth > 64) throw fail("nested too deep");
      if (i >= s.length()) throw fail("unexpected end");
      char c = s.charAt(i);
      switch (c) {
        case '{': {
          i++;
          Map<String, Object> map = new LinkedHashMap<>();
          space();
          if (i < s.length() && s.charAt(i) == '}') {
            i++;
            return map;
          }
          for (;;) {
            space();
            if (next() != '"') throw fail("expected a key");
            String key = string();
            space();
            if (next() != ':') throw fail("expected :");
            space();
            map.put(key, value(depth + 1));
            space();
            char d = next();
            if (d == '}') return map;
            if (d != ',') throw fail("expected , or }");
          }
        }
        case '[': {
          i++;
          List<Object> list = new ArrayList<>();
          space();
          if (i < s.length() && s.charAt(i) == ']') {
            i++;
            return list;
          }
          for (;;) {
            space();
            list.add(value(depth + 1));
            space();
            char d = next();
            if (d == ']') return list;
            if (d != ',') throw fail("expected , or ]");
          }
        }
        case '"':
          i++;
          return string();
        case 't':
          expect("true");
          return Boolean.TRUE;
        case 'f':
          expect("false");
          return Boolean.FALSE;
        case 'n':
          expect("null");
          return null;
        default:
          return number();
      }
    }

    private String string() {
      StringBuilder b = new StringBuilder();
      for (;;) {
        char c = next();
        if (c == '"') return b.toString();
        if (c < 0x20) throw fail("control character in string");
        if (c != '\\') {
          b.append(c);
          continue;
        }
        char e = next();
        switch (e) {
          case '"':
            b.append('"');
            break;
          case '\\':
            b.append('\\');
            break;
          case '/':
            b.append('/');
            break;
          case 'b':
            b.append('\b');
            break;
          case 'f':
            b.append('\f');
            break;
          case 'n':
            b.append('\n');
            break;
          case 'r':
            b.append('\r');
            break;
          case 't':
            b.append('\t');
            break;
          case 'u':
            if (i + 4 > s.length()) throw fail("short \\u escape");
            try {
              // Surrogate pairs arrive as two escapes: appending both units rebuilds the char.
              b.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
            } catch (NumberFormatException x) {
              throw fail("bad \\u escape");
            }
            i += 4;
            break;
          default:
            throw fail("bad escape");
        }
      }
    }

    private Object number() {
      int start = i;
      if (i < s.length() && s.charAt(i) == '-') i++;
      boolean integer = true;
      while (i < s.length()) {
        char c = s.charAt(i);
        if (c >= '0' && c <= '9') i++;
        else if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
          integer = false;
          i++;
        } else break;
      }
      String text = s.substring(start, i);
      if (text.isEmpty() || text.equals("-")) throw fail("unexpected character");
      try {
        if (integer) return Long.parseLong(text);
        return Double.parseDouble(text);
      } catch (NumberFormatException x) {
        try {
          return Double.parseDouble(text);
        } catch (NumberFormatException y) {
          throw fail("bad number");
        }
      }
    }

    static String write(Object value) {
      StringBuilder b = new StringBuilder();
      write(b, value);
      return b.toString();
    }

    private static void write(StringBuilder b, Object value) {
      if (value == null) {
        b.append("null");
      } else if (value instanceof String) {
        quote(b, (String) value);
      } else if (value instanceof Boolean || value instanceof Long || value instanceof Integer) {
        b.append(value);
      } else if (value instanceof Map) {
        b.append('{');
        boolean first = true;
        for (Map.Entry<?, ?> e : ((Map<?, ?>) value).entrySet()) {
          if (!first) b.append(',');
          first = false;
          quote(b, (String) e.getKey());
          b.append(':');
          write(b, e.getValue());
        }
        b.append('}');
      } else if (value instanceof List) {
        b.append('[');
        boolean first = true;
        for (Object o : (List<?>) value) {
          if (!first) b.append(',');
          first = false;
          write(b, o);
        }
        b.append(']');
      } else {
        throw new IllegalArgumentException("cannot write " + value.getClass());
      }
    }

    /**
     * Characters go out as UTF-8, except what JSON or UTF-8 cannot carry raw: quotes, backslash,
     * control characters, and lone surrogates (user text may hold them; getBytes would turn them
     * into '?'), which are escaped. Valid surrogate pairs stay raw: one 4-byte UTF-8 sequence.
     */
    private static void quote(StringBuilder b, String s) {
      b.append('"');
      for (int k = 0; k < s.length(); k++) {
        char c = s.charAt(k);
        if (c == '"' || c == '\\') {
          b.append('\\').append(c);
        } else if (c == '\n') {
          b.append("\\n");
        } else if (c == '\r') {
          b.append("\\r");
        } else if (c == '\t') {
          b.append("\\t");
        } else if (c < 0x20 || c == 0x7f) {
          unicode(b, c);
        } else if (Character.isHighSurrogate(c)) {
          if (k + 1 < s.length() && Character.isLowSurrogate(s.charAt(k + 1))) {
            b.append(c).append(s.charAt(++k));
          } else {
            unicode(b, c);
          }
        } else if (Character.isLowSurrogate(c)) {
          unicode(b, c);
        } else {
          b.append(c);
        }
      }
      b.append('"');
    }

    private static void unicode(StringBuilder b, char c) {
      b.append(String.format("\\u%04x", (int) c));
    }
  }

  private RuncellJShell() {}
}
