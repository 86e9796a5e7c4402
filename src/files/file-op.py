"""runcell workspace file operation: runs inside the notebook's sandbox, as the notebook's uid.

    python3 -I -c <this file> list|read|write|delete <relative path>

The server never touches a workspace path itself: a symlink the notebook planted could lead it
anywhere on the host. Here, the sandbox shows nothing of the host, and on top of that no symlink
is followed: every component is opened with O_NOFOLLOW relative to its parent.

Exit codes: 0 done; 2 not found; 3 wrong type (a file where a directory is needed or the other
way round); 4 a symlink in the way; 5 no space (quota or file size limit); 6 invalid path.
The message for people goes to stderr. An upload arrives on fd 3; a download leaves on stdout.
"""
import errno
import json
import os
import stat
import sys

ROOT = "/workspace"
NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def fail(code, message):
    sys.stderr.write(message)
    sys.exit(code)


def errno_exit(e, path):
    if e.errno == errno.ENOENT:
        fail(2, f"{path}: no such file or directory")
    if e.errno in (errno.ENOTDIR, errno.EISDIR, errno.ENOTEMPTY):
        fail(3, f"{path}: {os.strerror(e.errno)}")
    if e.errno == errno.ELOOP:
        fail(4, f"{path}: is a symbolic link (links are not followed)")
    if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        fail(5, f"{path}: {os.strerror(e.errno)}")
    fail(1, f"{path}: {os.strerror(e.errno)}")


def parts_of(path):
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        fail(6, f"{path}: '..' is not allowed")
    return parts


def open_dir(parts, create=False):
    """fd of the directory at parts, walked without following any link."""
    fd = os.open(ROOT, NOFOLLOW_DIR)
    for part in parts:
        try:
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            nfd = os.open(part, NOFOLLOW_DIR, dir_fd=fd)
        except OSError as e:
            if e.errno == errno.ENOTDIR and os.path.islink(f"/proc/self/fd/{fd}/{part}"):
                e = OSError(errno.ELOOP, os.strerror(errno.ELOOP))
            os.close(fd)
            raise e
        os.close(fd)
        fd = nfd
    return fd


def entry(fd, name):
    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    kind = "directory" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode) else "other"
    return {"name": name, "type": kind, "size": st.st_size, "modified": st.st_mtime}


def main():
    op, path = sys.argv[1], sys.argv[2]
    parts = parts_of(path)
    try:
        if op == "list":
            fd = open_dir(parts)
            entries = sorted((entry(fd, n) for n in os.listdir(fd)), key=lambda e: e["name"])
            sys.stdout.write(json.dumps(entries))
        elif op == "read":
            if not parts:
                fail(3, "/: is a directory")
            fd = open_dir(parts[:-1])
            f = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=fd)
            if not stat.S_ISREG(os.fstat(f).st_mode):
                fail(3, f"{path}: not a regular file")
            os.set_blocking(f, True)
            out = sys.stdout.buffer
            while chunk := os.read(f, 1 << 16):
                out.write(chunk)
        elif op == "write":
            if not parts:
                fail(3, "/: is a directory")
            fd = open_dir(parts[:-1], create=True)
            f = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=fd)
            if not stat.S_ISREG(os.fstat(f).st_mode):
                fail(3, f"{path}: not a regular file")
            src = os.fdopen(3, "rb", buffering=0)  # the upload: fd 3, the server's request pipe
            while chunk := src.read(1 << 16):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(f, view):]
            os.close(f)
        elif op == "delete":
            if not parts:
                fail(6, "the workspace itself cannot be deleted")
            fd = open_dir(parts[:-1])
            remove(fd, parts[-1])
        else:
            fail(6, f"unknown operation {op}")
    except OSError as e:
        errno_exit(e, path)


def remove(fd, name):
    """Deletes name (a whole directory tree), never following a link."""
    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        sub = os.open(name, NOFOLLOW_DIR, dir_fd=fd)
        for child in os.listdir(sub):
            remove(sub, child)
        os.close(sub)
        os.rmdir(name, dir_fd=fd)
    else:
        os.unlink(name, dir_fd=fd)


main()
