"""Mounts and unmounts job workspaces for the server (root): one long-lived process, so a job
does not pay for starting mount(8) and umount(8). Reads one request a line on stdin and answers
each, in order, with `ok` or `error <errno> <message>`:

    mount <bytes> <inodes> <path>   a fresh tmpfs on the (empty, server-made) directory
    umount <path>                   detach it; its files are gone with it
"""
import ctypes
import os
import sys

libc = ctypes.CDLL(None, use_errno=True)
MS_NOSUID, MS_NODEV = 2, 4
MNT_DETACH, UMOUNT_NOFOLLOW = 2, 8


def answer(result):
    if result == 0:
        sys.stdout.write("ok\n")
    else:
        errno = ctypes.get_errno()
        sys.stdout.write("error %d %s\n" % (errno, os.strerror(errno)))
    sys.stdout.flush()


for line in sys.stdin:
    op, _, rest = line.rstrip("\n").partition(" ")
    if op == "mount":
        size, inodes, path = rest.split(" ", 2)
        options = "size=%d,nr_inodes=%d,mode=0700" % (int(size), int(inodes))
        answer(libc.mount(b"runcell-job", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options.encode()))
    elif op == "umount":
        # Lazy: the tree is dead, but a straggling reference must not keep the files alive.
        answer(libc.umount2(rest.encode(), MNT_DETACH | UMOUNT_NOFOLLOW))
    else:
        sys.stdout.write("error 22 unknown request\n")
        sys.stdout.flush()
